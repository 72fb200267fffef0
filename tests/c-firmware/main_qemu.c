/*
 * The C test firmware on the Cortex-M4 board (qemu-system-arm -machine mps2-an386): start-up
 * code, vector table, semihosting (files of QEMU's working directory as the "transport",
 * the console, the exit status) and stack painting. No RTOS, no C library start-up files.
 */
#include <stdint.h>
#include <string.h>

#include "platform.h"

/* ---- semihosting ---- */

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define ADP_STOPPED_RUNTIME_ERROR 0x20023

static int semihost(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void __attribute__((noreturn)) exit_with(int ok)
{
    semihost(SYS_EXIT, (const void *)(uintptr_t)(ok ? ADP_STOPPED_APPLICATION_EXIT
                                                    : ADP_STOPPED_RUNTIME_ERROR));
    for (;;) {
    }
}

int plat_open(const char *name)
{
    uint32_t args[3] = {(uint32_t)(uintptr_t)name, 1 /* "rb" */, (uint32_t)strlen(name)};
    return semihost(SYS_OPEN, args);
}

size_t plat_read(int h, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        uint32_t args[3] = {(uint32_t)h, (uint32_t)(uintptr_t)(buf + got), (uint32_t)(n - got)};
        int left = semihost(SYS_READ, args); /* bytes NOT read */
        size_t read = (n - got) - (size_t)left;
        if (left < 0 || read == 0)
            break;
        got += read;
    }
    return got;
}

void plat_close(int h)
{
    uint32_t args[1] = {(uint32_t)h};
    semihost(SYS_CLOSE, args);
}

/* QEMU's standard output: the file ":tt" opened for writing (mode 4). */
static int console = -1;

static void write_out(const char *s, size_t n)
{
    uint32_t args[3] = {(uint32_t)console, (uint32_t)(uintptr_t)s, (uint32_t)n};
    semihost(SYS_WRITE, args);
}

void plat_print(const char *s)
{
    if (console < 0) {
        uint32_t args[3] = {(uint32_t)(uintptr_t)":tt", 4 /* "w" */, 3};
        console = semihost(SYS_OPEN, args);
    }
    write_out(s, strlen(s));
    write_out("\n", 1);
}

/* ---- stack painting ---- */

#define PAINT 0xDEADBEEFu
extern uint32_t _ebss[];
extern uint32_t _estack[];
static uintptr_t painted_at;

void plat_paint_stack(void)
{
    uint32_t here;
    uintptr_t sp = (uintptr_t)&here;
    painted_at = sp;
    for (uint32_t *p = _ebss; (uintptr_t)p < sp - 64u; p++)
        *p = PAINT;
}

/* The deepest word below the painting point that changed. */
size_t plat_stack_peak(void)
{
    uint32_t *p = _ebss;
    while ((uintptr_t)p < painted_at - 64u && *p == PAINT)
        p++;
    return painted_at - (uintptr_t)p;
}

/* ---- start-up ---- */

extern uint32_t _sidata[], _sdata[], _edata[], _sbss[];
int main(void);

void reset_handler(void)
{
    memcpy(_sdata, _sidata, (size_t)((uintptr_t)_edata - (uintptr_t)_sdata));
    memset(_sbss, 0, (size_t)((uintptr_t)_ebss - (uintptr_t)_sbss));
    /* Full access to the FPU (the library is built for the hard-float ABI). */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n isb");
    exit_with(main());
}

static void hard_fault(void)
{
    plat_print("HardFault (stack overflow?)");
    exit_with(0);
}

static void other_exception(void)
{
    plat_print("unexpected exception");
    exit_with(0);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))_estack, reset_handler, other_exception, hard_fault,
    other_exception,        other_exception, other_exception, 0,
    0,                      0,               0,               other_exception,
    other_exception,        0,               other_exception, other_exception,
};

int main(void)
{
    char params[32] = {0};
    size_t block = 0;
    int h = plat_open("params.txt");
    if (h < 0) {
        plat_print("FAIL: params.txt missing");
        return 0;
    }
    plat_read(h, (uint8_t *)params, sizeof params - 1);
    plat_close(h);
    if (strncmp(params, "block=", 6) != 0) {
        plat_print("FAIL: params.txt without block=N");
        return 0;
    }
    for (const char *p = params + 6; *p >= '0' && *p <= '9'; p++)
        block = block * 10u + (size_t)(*p - '0');
    int ok = run_scenarios(block);
    plat_print(ok ? "RESULT: PASS" : "RESULT: FAIL");
    return ok;
}
