/*
 * The firmware's own NOR flash driver for ecu_update.h's flash store: a NOR device in memory
 * that refuses what real NOR refuses (misaligned program or erase, access past the end, and
 * programming a word twice between erases, even with the same value). On an ECU this file
 * is the chip's flash driver.
 */
#include <string.h>

#include "flash.h"

static int word_programmed(const struct nor *n, uint32_t word)
{
    return (n->programmed[word / 8u] >> (word % 8u)) & 1u;
}

int32_t nor_read(void *ctx, uint32_t offset, uint8_t *buf, size_t len)
{
    const struct nor *n = ctx;
    if (offset > n->size || len > n->size - offset)
        return NOR_E_RANGE;
    memcpy(buf, n->mem + offset, len);
    return 0;
}

int32_t nor_program(void *ctx, uint32_t offset, const uint8_t *data, size_t len)
{
    struct nor *n = ctx;
    if (offset % NOR_WRITE_SIZE || len % NOR_WRITE_SIZE)
        return NOR_E_ALIGN;
    if (offset > n->size || len > n->size - offset)
        return NOR_E_RANGE;
    for (uint32_t w = offset / NOR_WRITE_SIZE; w < (offset + len) / NOR_WRITE_SIZE; w++) {
        if (word_programmed(n, w))
            return NOR_E_TWICE;
    }
    for (uint32_t w = offset / NOR_WRITE_SIZE; w < (offset + len) / NOR_WRITE_SIZE; w++)
        n->programmed[w / 8u] |= (uint8_t)(1u << (w % 8u));
    /* NOR programming only clears bits. */
    for (size_t i = 0; i < len; i++)
        n->mem[offset + i] &= data[i];
    n->programs++;
    return 0;
}

int32_t nor_erase(void *ctx, uint32_t from, uint32_t to)
{
    struct nor *n = ctx;
    if (from % NOR_SECTOR_SIZE || to % NOR_SECTOR_SIZE || from > to)
        return NOR_E_ALIGN;
    if (to > n->size)
        return NOR_E_RANGE;
    memset(n->mem + from, 0xFF, to - from);
    for (uint32_t w = from / NOR_WRITE_SIZE; w < to / NOR_WRITE_SIZE; w++)
        n->programmed[w / 8u] &= (uint8_t)~(1u << (w % 8u));
    n->erases++;
    return 0;
}

void nor_init(struct nor *n, uint8_t *mem, uint8_t *programmed, uint32_t size)
{
    n->mem = mem;
    n->programmed = programmed;
    n->size = size;
    n->programs = 0;
    n->erases = 0;
    memset(mem, 0xFF, size);
    memset(programmed, 0, size / NOR_WRITE_SIZE / 8u);
}
