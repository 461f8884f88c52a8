/* replay.c — runs a fuzz target without libFuzzer: a main() that feeds every file of
 * the directories (or the files) named on the command line, in name order, to the
 * target's LLVMFuzzerTestOneInput, after LLVMFuzzerInitialize when the target has one.
 * Built with the project's compiler (gcc) for every target and registered with CTest
 * (fuzz_<parser>_replay) on the committed corpus core/fuzz/corpus/<target>/, so the
 * seed inputs and every crash reproducer kept there run in `scripts/test`, in the
 * release and the ASan+UBSan builds. Each input ends right before a PROT_NONE page,
 * as in the unit tests, so an over-read crashes even without ASan. A target reports a
 * failure by aborting; this driver fails when it found no input at all (a test that
 * checks nothing must not pass). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

static int by_name(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(2);
  }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = ((size_t)n + page - 1) / page + 1;
  uint8_t *base = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
  if (base == MAP_FAILED) abort();
  mprotect(base + (pages - 1) * page, page, PROT_NONE);
  uint8_t *p = base + (pages - 1) * page - (size_t)n;
  if (n && fread(p, 1, (size_t)n, f) != (size_t)n) {
    perror(path);
    exit(2);
  }
  fclose(f);
  mprotect(base, (pages - 1) * page, PROT_READ); /* the target must not write its input */
  LLVMFuzzerTestOneInput(p, (size_t)n);
  munmap(base, pages * page);
}

int main(int argc, char **argv) {
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
  size_t count = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0) {
      perror(argv[i]);
      return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
      run_file(argv[i]);
      count++;
      continue;
    }
    DIR *d = opendir(argv[i]);
    if (!d) {
      perror(argv[i]);
      return 2;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      if (n == cap && !(names = realloc(names, (cap = cap ? cap * 2 : 64) * sizeof *names))) abort();
      if (!(names[n] = malloc(strlen(argv[i]) + strlen(e->d_name) + 2))) abort();
      sprintf(names[n++], "%s/%s", argv[i], e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, by_name);
    for (size_t k = 0; k < n; k++) {
      if (stat(names[k], &st) == 0 && S_ISREG(st.st_mode)) {
        run_file(names[k]);
        count++;
      }
      free(names[k]);
    }
    free(names);
  }
  fprintf(stderr, "%s: %zu inputs replayed, no invariant failed\n", argv[0], count);
  return count ? 0 : 1;
}
