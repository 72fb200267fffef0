/* The test firmware's NOR flash driver (flash.c). */
#ifndef FLASH_H
#define FLASH_H

#include <stddef.h>
#include <stdint.h>

/* A double word, as STM32L4/G4 internal flash. */
#define NOR_WRITE_SIZE 8u
/* 4 KiB sectors, as most serial NOR flash. */
#define NOR_SECTOR_SIZE 4096u

#define NOR_E_RANGE (-101)
#define NOR_E_ALIGN (-102)
#define NOR_E_TWICE (-103)

struct nor {
    uint8_t *mem;        /* the device's bytes */
    uint8_t *programmed; /* one bit per word: programmed since its last erase */
    uint32_t size;
    uint32_t programs;
    uint32_t erases;
};

/* Erases the whole device. `programmed` holds size / NOR_WRITE_SIZE / 8 bytes. */
void nor_init(struct nor *n, uint8_t *mem, uint8_t *programmed, uint32_t size);
int32_t nor_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len);
int32_t nor_program(void *ctx, uint32_t offset, const uint8_t *data, size_t len);
int32_t nor_erase(void *ctx, uint32_t from, uint32_t to);

#endif
