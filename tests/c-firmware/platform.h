/*
 * What the scenarios need from the machine they run on: the "transport" (files read in
 * blocks), a console and the stack measurement. main_qemu.c implements it with semihosting
 * on the Cortex-M4 board, main_host.c with stdio on Linux.
 */
#ifndef PLATFORM_H
#define PLATFORM_H

#include <stddef.h>
#include <stdint.h>

/* Opens a file of the data folder; returns a handle >= 0, or -1. */
int plat_open(const char *name);
/* Reads up to n bytes (fewer only at the end of the file); returns how many. */
size_t plat_read(int h, uint8_t *buf, size_t n);
void plat_close(int h);
/* Prints a line. */
void plat_print(const char *s);
/* Fills the unused stack with a pattern; plat_stack_peak() then returns the deepest use
 * below the painting point in bytes (0 where not measured). */
void plat_paint_stack(void);
size_t plat_stack_peak(void);

/* The scenarios (scenario.c): 1 when all passed. */
int run_scenarios(size_t block);

#endif
