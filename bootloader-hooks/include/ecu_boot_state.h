/*
 * ecu_boot_state.h - the ECU A/B boot-state flash record, for bootloaders in C.
 *
 * Layout (all little-endian), specified in docs/BOOTSTATE.md; one record per copy,
 * two copies in two flash sectors:
 *
 *   off  size  field
 *     0     4  magic "ECBS" (0x53424345)
 *     4     2  version (2)
 *     6     2  record length (304)
 *     8     4  revision
 *    12   132  slot A: priority u8, tries_left u8, flags u8 (bit 0 = successful),
 *                      name_len u8, name[128] (unused bytes 0)
 *   144   132  slot B: same
 *   276     8  anti-rollback floor (u64): refuse to install anything with a lower
 *              security version; raised only when a slot is marked good
 *   284     8  slot A's security version (u64), recorded when the slot is staged
 *   292     8  slot B's security version (u64)
 *   300     4  CRC-32 (zlib: reflected 0xEDB88320, init and xor-out 0xFFFFFFFF) of bytes 0..300
 *
 * Version 1 (280 bytes) lacks bytes 276..300; its CRC of bytes 0..276 is at 276. It is still
 * valid (floor 0, security versions 0, see ecu_boot_floor()); every write is version 2.
 *
 * Current copy: the valid one; of two valid ones the newer revision
 * ((int32_t)(rev1 - rev0) > 0 picks copy 1, equal picks copy 0).
 *
 * Boot decision (the same as the Rust crate's BootState::decide): take the slots in order
 * of priority (higher first, A on a tie). The first with priority > 0 that is successful
 * boots, nothing written. The first with priority > 0 and tries_left > 0 boots after one
 * try is used: write the record with tries_left - 1 and revision + 1 to the OTHER copy
 * (erase it first), then boot. If neither qualifies, boot the second slot in that order,
 * nothing written. If no copy is valid, boot the bootloader's default slot.
 *
 * Two ways to use this header:
 *  - link the Rust crate (bootloader-hooks) and call ecu_boot_decide(), or
 *  - use the static inline functions below (no Rust needed, ~80 lines of C).
 */
#ifndef ECU_BOOT_STATE_H
#define ECU_BOOT_STATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ECU_BOOT_MAGIC 0x53424345u /* "ECBS" */
#define ECU_BOOT_VERSION 2u
#define ECU_BOOT_VERSION_1 1u
#define ECU_BOOT_MAX_NAME_LEN 128u
#define ECU_BOOT_SLOT_LEN (4u + ECU_BOOT_MAX_NAME_LEN) /* 132 */
#define ECU_BOOT_RECORD_LEN (12u + 2u * ECU_BOOT_SLOT_LEN + 28u) /* 304 */
#define ECU_BOOT_V1_RECORD_LEN (12u + 2u * ECU_BOOT_SLOT_LEN + 4u) /* 280 */

#define ECU_BOOT_OFF_MAGIC 0u
#define ECU_BOOT_OFF_VERSION 4u
#define ECU_BOOT_OFF_LENGTH 6u
#define ECU_BOOT_OFF_REVISION 8u
#define ECU_BOOT_OFF_SLOT_A 12u
#define ECU_BOOT_OFF_SLOT_B (ECU_BOOT_OFF_SLOT_A + ECU_BOOT_SLOT_LEN) /* 144 */
#define ECU_BOOT_OFF_FLOOR (ECU_BOOT_OFF_SLOT_B + ECU_BOOT_SLOT_LEN) /* 276 */
#define ECU_BOOT_OFF_SECURITY_VERSION (ECU_BOOT_OFF_FLOOR + 8u)    /* 284; slot B at +8 */
#define ECU_BOOT_OFF_CRC (ECU_BOOT_OFF_SECURITY_VERSION + 16u)     /* 300 */
#define ECU_BOOT_V1_OFF_CRC ECU_BOOT_OFF_FLOOR                     /* 276 */

/* Within a slot entry. */
#define ECU_BOOT_SLOT_OFF_PRIORITY 0u
#define ECU_BOOT_SLOT_OFF_TRIES 1u
#define ECU_BOOT_SLOT_OFF_FLAGS 2u
#define ECU_BOOT_SLOT_OFF_NAME_LEN 3u
#define ECU_BOOT_SLOT_OFF_NAME 4u
#define ECU_BOOT_FLAG_SUCCESSFUL 0x01u

#define ECU_BOOT_SLOT_A 0u
#define ECU_BOOT_SLOT_B 1u

#define ECU_BOOT_KIND_CONFIRMED 0u
#define ECU_BOOT_KIND_TRIAL 1u
#define ECU_BOOT_KIND_LAST_RESORT 2u

/* Return codes of ecu_boot_decide(). */
#define ECU_BOOT_OK 0
#define ECU_BOOT_EINVAL (-1)   /* NULL pointer or len < ECU_BOOT_RECORD_LEN */
#define ECU_BOOT_ENOSTATE (-2) /* no valid copy: boot the default slot */

/* Result of a decision. */
struct ecu_boot_decision {
    uint8_t slot;         /* ECU_BOOT_SLOT_A or ECU_BOOT_SLOT_B */
    uint8_t write_needed; /* 1: write `record` to copy `write_copy` before booting */
    uint8_t write_copy;   /* 0 or 1 */
    uint8_t kind;         /* ECU_BOOT_KIND_* */
    uint8_t record[ECU_BOOT_RECORD_LEN];
};

/*
 * Implemented in Rust (bootloader_hooks::ffi). copy0 and copy1 point to `len` bytes each
 * (the two flash copies, memory-mapped or read into RAM).
 */
int32_t ecu_boot_decide(const uint8_t *copy0, const uint8_t *copy1, size_t len,
                        struct ecu_boot_decision *out);

/* ---- Reading recipe in plain C (no Rust needed) ---- */

static inline uint32_t ecu_boot_rd32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline void ecu_boot_wr32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline uint64_t ecu_boot_rd64(const uint8_t *p)
{
    return (uint64_t)ecu_boot_rd32(p) | ((uint64_t)ecu_boot_rd32(p + 4) << 32);
}

static inline unsigned ecu_boot_rd16(const uint8_t *p)
{
    return (unsigned)p[0] | ((unsigned)p[1] << 8);
}

/* CRC-32 (zlib), bitwise: small and slow enough for 300 bytes once per boot. */
static inline uint32_t ecu_boot_crc32(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* 1 if `r` (ECU_BOOT_RECORD_LEN bytes) is a valid record (version 2, or version 1). */
static inline int ecu_boot_record_valid(const uint8_t *r)
{
    unsigned version = ecu_boot_rd16(r + ECU_BOOT_OFF_VERSION);
    unsigned len = version == ECU_BOOT_VERSION ? ECU_BOOT_RECORD_LEN : ECU_BOOT_V1_RECORD_LEN;
    unsigned crc = len - 4u;
    if (ecu_boot_rd32(r + ECU_BOOT_OFF_MAGIC) != ECU_BOOT_MAGIC)
        return 0;
    if (version != ECU_BOOT_VERSION && version != ECU_BOOT_VERSION_1)
        return 0;
    if (ecu_boot_rd16(r + ECU_BOOT_OFF_LENGTH) != len)
        return 0;
    if (ecu_boot_rd32(r + crc) != ecu_boot_crc32(r, crc))
        return 0;
    for (unsigned s = 0; s < 2; s++) {
        const uint8_t *e = r + ECU_BOOT_OFF_SLOT_A + s * ECU_BOOT_SLOT_LEN;
        if ((e[ECU_BOOT_SLOT_OFF_FLAGS] & ~ECU_BOOT_FLAG_SUCCESSFUL) != 0 ||
            e[ECU_BOOT_SLOT_OFF_NAME_LEN] > ECU_BOOT_MAX_NAME_LEN)
            return 0;
    }
    return 1;
}

/* The anti-rollback floor of a valid record `r` (0 in a version-1 record). A bootloader or
 * installer refuses an image whose security version is below it. */
static inline uint64_t ecu_boot_floor(const uint8_t *r)
{
    if (ecu_boot_rd16(r + ECU_BOOT_OFF_VERSION) != ECU_BOOT_VERSION)
        return 0;
    return ecu_boot_rd64(r + ECU_BOOT_OFF_FLOOR);
}

/* The security version recorded for `slot` (ECU_BOOT_SLOT_A or _B) in a valid record `r`
 * (0 in a version-1 record). */
static inline uint64_t ecu_boot_security_version(const uint8_t *r, unsigned slot)
{
    if (ecu_boot_rd16(r + ECU_BOOT_OFF_VERSION) != ECU_BOOT_VERSION || slot > 1u)
        return 0;
    return ecu_boot_rd64(r + ECU_BOOT_OFF_SECURITY_VERSION + 8u * slot);
}

/* The current copy: 0 or 1, or -1 if neither is valid. */
static inline int ecu_boot_current(const uint8_t *c0, const uint8_t *c1)
{
    int v0 = ecu_boot_record_valid(c0), v1 = ecu_boot_record_valid(c1);
    if (v0 && v1) {
        uint32_t r0 = ecu_boot_rd32(c0 + ECU_BOOT_OFF_REVISION);
        uint32_t r1 = ecu_boot_rd32(c1 + ECU_BOOT_OFF_REVISION);
        return (int32_t)(r1 - r0) > 0 ? 1 : 0;
    }
    return v0 ? 0 : (v1 ? 1 : -1);
}

/* The decision in C, same contract as ecu_boot_decide(). */
static inline int32_t ecu_boot_decide_c(const uint8_t *c0, const uint8_t *c1,
                                        struct ecu_boot_decision *out)
{
    int cur = ecu_boot_current(c0, c1);
    if (cur < 0)
        return ECU_BOOT_ENOSTATE;
    const uint8_t *r = cur ? c1 : c0;
    const uint8_t *a = r + ECU_BOOT_OFF_SLOT_A, *b = r + ECU_BOOT_OFF_SLOT_B;
    unsigned order[2] = {0, 1};
    if (b[ECU_BOOT_SLOT_OFF_PRIORITY] > a[ECU_BOOT_SLOT_OFF_PRIORITY]) {
        order[0] = 1;
        order[1] = 0;
    }
    out->write_needed = 0;
    out->write_copy = 0;
    for (size_t i = 0; i < ECU_BOOT_RECORD_LEN; i++)
        out->record[i] = 0;
    for (unsigned i = 0; i < 2; i++) {
        const uint8_t *e = r + ECU_BOOT_OFF_SLOT_A + order[i] * ECU_BOOT_SLOT_LEN;
        if (e[ECU_BOOT_SLOT_OFF_PRIORITY] == 0)
            continue;
        if (e[ECU_BOOT_SLOT_OFF_FLAGS] & ECU_BOOT_FLAG_SUCCESSFUL) {
            out->slot = (uint8_t)order[i];
            out->kind = ECU_BOOT_KIND_CONFIRMED;
            return ECU_BOOT_OK;
        }
        if (e[ECU_BOOT_SLOT_OFF_TRIES] > 0) {
            /* Written as version 2 (a version-1 record gets floor 0, versions 0). */
            int v2 = ecu_boot_rd16(r + ECU_BOOT_OFF_VERSION) == ECU_BOOT_VERSION;
            for (size_t k = 0; k < ECU_BOOT_OFF_CRC; k++)
                out->record[k] = (k < ECU_BOOT_OFF_FLOOR || v2) ? r[k] : 0;
            out->record[ECU_BOOT_OFF_VERSION] = (uint8_t)ECU_BOOT_VERSION;
            out->record[ECU_BOOT_OFF_VERSION + 1] = 0;
            out->record[ECU_BOOT_OFF_LENGTH] = (uint8_t)ECU_BOOT_RECORD_LEN;
            out->record[ECU_BOOT_OFF_LENGTH + 1] = (uint8_t)(ECU_BOOT_RECORD_LEN >> 8);
            out->record[ECU_BOOT_OFF_SLOT_A + order[i] * ECU_BOOT_SLOT_LEN + ECU_BOOT_SLOT_OFF_TRIES]--;
            ecu_boot_wr32(out->record + ECU_BOOT_OFF_REVISION,
                          ecu_boot_rd32(r + ECU_BOOT_OFF_REVISION) + 1u);
            ecu_boot_wr32(out->record + ECU_BOOT_OFF_CRC,
                          ecu_boot_crc32(out->record, ECU_BOOT_OFF_CRC));
            out->slot = (uint8_t)order[i];
            out->kind = ECU_BOOT_KIND_TRIAL;
            out->write_needed = 1;
            out->write_copy = (uint8_t)(1 - cur);
            return ECU_BOOT_OK;
        }
    }
    out->slot = (uint8_t)order[1];
    out->kind = ECU_BOOT_KIND_LAST_RESORT;
    return ECU_BOOT_OK;
}

#ifdef __cplusplus
}
#endif

#endif /* ECU_BOOT_STATE_H */
