/* The scenarios on Linux (stdio): run in the data folder, like the QEMU firmware. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "platform.h"

#define MAX_FILES 4
static FILE *files[MAX_FILES];

int plat_open(const char *name)
{
    for (int i = 0; i < MAX_FILES; i++) {
        if (!files[i]) {
            files[i] = fopen(name, "rb");
            return files[i] ? i : -1;
        }
    }
    return -1;
}

size_t plat_read(int h, uint8_t *buf, size_t n)
{
    return fread(buf, 1, n, files[h]);
}

void plat_close(int h)
{
    fclose(files[h]);
    files[h] = NULL;
}

void plat_print(const char *s)
{
    puts(s);
}

void plat_paint_stack(void) {}

size_t plat_stack_peak(void)
{
    return 0;
}

int main(void)
{
    char params[32] = {0};
    int h = plat_open("params.txt");
    if (h < 0) {
        puts("FAIL: params.txt missing");
        return 1;
    }
    plat_read(h, (uint8_t *)params, sizeof params - 1);
    plat_close(h);
    if (strncmp(params, "block=", 6) != 0) {
        puts("FAIL: params.txt without block=N");
        return 1;
    }
    int ok = run_scenarios((size_t)strtoul(params + 6, NULL, 10));
    puts(ok ? "RESULT: PASS" : "RESULT: FAIL");
    return ok ? 0 : 1;
}
