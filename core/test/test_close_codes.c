/* test_close_codes.c — wire validity of close status codes and their names. */
#include "proto/close_codes.h"

#include "test.h"

TEST(valid_ranges) {
  /* The rule written out independently, checked over a wide range. */
  int wrong = 0;
  for (unsigned c = 0; c < 70000; c++) {
    int expect = (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) ||
                 (c >= 3000 && c <= 4999);
    if (ews_close_code_valid(c) != expect) {
      fprintf(stderr, "  code %u\n", c);
      wrong++;
    }
  }
  CHECK_EQ(wrong, 0);
  CHECK(!ews_close_code_valid(0xFFFFFFFFu));
}

TEST(boundaries) {
  CHECK(!ews_close_code_valid(999));
  CHECK(ews_close_code_valid(EWS_CLOSE_NORMAL));
  CHECK(ews_close_code_valid(EWS_CLOSE_UNSUPPORTED));
  CHECK(!ews_close_code_valid(1004));
  CHECK(!ews_close_code_valid(EWS_CLOSE_NO_STATUS));
  CHECK(!ews_close_code_valid(EWS_CLOSE_ABNORMAL));
  CHECK(ews_close_code_valid(EWS_CLOSE_INVALID_DATA));
  CHECK(ews_close_code_valid(EWS_CLOSE_BAD_GATEWAY));
  CHECK(!ews_close_code_valid(EWS_CLOSE_TLS));
  CHECK(!ews_close_code_valid(1016));
  CHECK(!ews_close_code_valid(2999));
  CHECK(ews_close_code_valid(3000));
  CHECK(ews_close_code_valid(4999));
  CHECK(!ews_close_code_valid(5000));
}

TEST(names) {
  CHECK_STR(ews_close_code_name(1000), "normal");
  CHECK_STR(ews_close_code_name(1001), "going away");
  CHECK_STR(ews_close_code_name(1002), "protocol error");
  CHECK_STR(ews_close_code_name(1009), "message too big");
  CHECK_STR(ews_close_code_name(3000), "application");
  CHECK_STR(ews_close_code_name(3999), "application");
  CHECK_STR(ews_close_code_name(4000), "private");
  CHECK_STR(ews_close_code_name(4999), "private");
  CHECK_STR(ews_close_code_name(0), "invalid");
  CHECK_STR(ews_close_code_name(1004), "invalid");
  CHECK_STR(ews_close_code_name(2000), "invalid");
  CHECK_STR(ews_close_code_name(5000), "invalid");
  int wrong = 0;
  for (unsigned c = 0; c < 6000; c++) {
    const char *n = ews_close_code_name(c);
    if (!n || !n[0]) wrong++;
    /* Every valid code has a real name. */
    else if (ews_close_code_valid(c) && strcmp(n, "invalid") == 0) wrong++;
  }
  CHECK_EQ(wrong, 0);
}

int main(void) {
  RUN(valid_ranges);
  RUN(boundaries);
  RUN(names);
  return TEST_EXIT();
}
