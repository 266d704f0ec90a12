// The benchmark task for checkpoint/restore: holds <MiB> of resident memory, the first
// half compressible (a repeated text line stamped with the page number, so no two pages
// are identical), the second half random. It writes a heartbeat file every 2 ms (opened
// and closed each time, so a dump never holds it open), rewrites <percent>% of its pages
// on SIGUSR1 (then writes "changed"), and on SIGUSR2 reads every page, writes "done" with
// a checksum and exits: the work a restored task must finish.
// Usage: hog <MiB> <dir> [percent=10]
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

static volatile sig_atomic_t change_requested = 0;
static volatile sig_atomic_t finish_requested = 0;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

static void on_usr1(int sig) { (void)sig; change_requested = 1; }
static void on_usr2(int sig) { (void)sig; finish_requested = 1; }

static void fill_random(unsigned char *page) {
  uint64_t *words = (uint64_t *)page;
  for (size_t i = 0; i < PAGE / 8; i++) words[i] = next();
}

static void fill_text(unsigned char *page, size_t index) {
  static const char line[] = "spot-snapshot benchmark: compressible memory, page ";
  size_t len = sizeof(line) - 1;
  for (size_t i = 0; i < PAGE; i++) page[i] = (unsigned char)line[i % len];
  memcpy(page, &index, sizeof index);
}

// Writes "<text>\n" to <dir>/<name> without truncating, so the file size stays stable.
static void note(const char *dir, const char *name, const char *text) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  int fd = open(path, O_WRONLY | O_CREAT, 0644);
  if (fd < 0) return;
  char buf[64];
  memset(buf, ' ', sizeof buf);
  size_t n = strlen(text);
  if (n > sizeof buf - 1) n = sizeof buf - 1;
  memcpy(buf, text, n);
  buf[sizeof buf - 1] = '\n';
  ssize_t written = pwrite(fd, buf, sizeof buf, 0);
  (void)written;
  close(fd);
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: hog <MiB> <dir> [percent]\n");
    return 2;
  }
  size_t mib = strtoull(argv[1], NULL, 10);
  const char *dir = argv[2];
  unsigned percent = argc > 3 ? (unsigned)atoi(argv[3]) : 10;
  size_t pages = mib * 256;
  unsigned char *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    perror("mmap");
    return 1;
  }
  for (size_t p = 0; p < pages; p++) {
    if (p < pages / 2) fill_text(mem + p * PAGE, p);
    else fill_random(mem + p * PAGE);
  }
  signal(SIGUSR1, on_usr1);
  signal(SIGUSR2, on_usr2);
  note(dir, "ready", "ready");
  uint64_t beat = 0;
  unsigned generation = 0;
  char text[64];
  for (;;) {
    snprintf(text, sizeof text, "%llu %llu", (unsigned long long)++beat, (unsigned long long)now_ns());
    note(dir, "heartbeat", text);
    if (change_requested) {
      change_requested = 0;
      generation++;
      // Every page whose index falls in the generation's slice of each 100: percent% in all.
      for (size_t p = 0; p < pages; p++) {
        if ((p + generation * 37) % 100 < percent) fill_random(mem + p * PAGE);
      }
      snprintf(text, sizeof text, "%u", generation);
      note(dir, "changed", text);
    }
    if (finish_requested) {
      uint64_t sum = 0;
      for (size_t p = 0; p < pages; p++) {
        const uint64_t *words = (const uint64_t *)(mem + p * PAGE);
        for (size_t i = 0; i < PAGE / 8; i += 64) sum += words[i];
      }
      snprintf(text, sizeof text, "done %llu", (unsigned long long)sum);
      note(dir, "done", text);
      return 0;
    }
    usleep(2000);
  }
}
