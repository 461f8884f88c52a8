/* err.c — lookups over the EWS_ERRNO_MAP table in err.h. */
#include "err.h"

const char *ews_strerror(int err) {
  switch (err) {
#define XX(name, val, cc, hs, msg) \
  case val:                        \
    return msg;
    EWS_ERRNO_MAP(XX)
#undef XX
  }
  return "unknown error";
}

const char *ews_err_name(int err) {
  switch (err) {
#define XX(name, val, cc, hs, msg) \
  case val:                        \
    return "EWS_E" #name;
    EWS_ERRNO_MAP(XX)
#undef XX
  }
  return "EWS_EUNKNOWN";
}

int ews_err_close_code(int err) {
  switch (err) {
#define XX(name, val, cc, hs, msg) \
  case val:                        \
    return cc;
    EWS_ERRNO_MAP(XX)
#undef XX
  }
  return 0;
}

int ews_err_http_status(int err) {
  switch (err) {
#define XX(name, val, cc, hs, msg) \
  case val:                        \
    return hs;
    EWS_ERRNO_MAP(XX)
#undef XX
  }
  return 0;
}
