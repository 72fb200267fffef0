/*
 * The C firmware's scenarios, the same as the Rust firmware's (tests/firmware/src/agent.rs),
 * through ecu_update.h and ecu_boot_state.h only:
 *
 *   1. from scratch: v1.update into slot B, staged, "reboot" through ecu_boot_decide,
 *      verified, marked good; slot B's image equals v1.bin;
 *   2. delta: v1-v2.update into slot A, copying what it shares from slot B (read only);
 *   3. one flipped byte: v2-flipped.update is refused; the active slot and the boot record
 *      are untouched, the old slot still boots and holds v2.bin;
 *   4. below the floor: v1.update replayed after v2 was marked good is refused by the floor.
 *
 * Each update arrives in `block`-byte pieces, as a bus would deliver it. The flash is the
 * firmware's own driver (flash.c); the boot record's two copies are its sectors 0 and 1.
 */
#include <string.h>

#include "ecu_boot_state.h"
#include "ecu_update.h"
#include "flash.h"
#include "platform.h"

#ifndef ECU_TEST_KEY
#error "define ECU_TEST_KEY as the 32 bytes of the trusted public key (0x.., 0x.., ...)"
#endif

#define SLOT_SIZE (256u * 1024u)
#define DEVICE (2u * NOR_SECTOR_SIZE + 2u * SLOT_SIZE)
#define MAX_BLOCK 4096u

/* The key the firmware trusts, compiled in (borrowed by the policy: static). */
static const uint8_t KEYS[ECU_UPDATE_KEY_LEN] = {ECU_TEST_KEY};

/* The simulated flash device; on the board it is in a memory region of its own. */
#ifdef __arm__
#define NORSIM __attribute__((section(".norsim")))
#else
#define NORSIM
#endif
static uint8_t flash_mem[DEVICE] NORSIM;
static uint8_t flash_programmed[DEVICE / NOR_WRITE_SIZE / 8u] NORSIM;
static struct nor nor;

/* The memory lent to the installer. */
static _Alignas(ECU_UPDATE_MEM_ALIGN) uint8_t update_mem[ECU_UPDATE_MEM_SIZE];
static ecu_update *u;

static uint8_t block_buf[MAX_BLOCK];
static uint8_t cmp_want[512], cmp_have[512];
static size_t install_stack;

static const ecu_flash_layout LAYOUT = {
    .slot_a = 2u * NOR_SECTOR_SIZE,
    .slot_b = 2u * NOR_SECTOR_SIZE + SLOT_SIZE,
    .slot_size = SLOT_SIZE,
};

static void say_num(const char *what, unsigned long n)
{
    char line[128];
    char digits[24];
    size_t k = 0, len = strlen(what);
    if (len > sizeof line - 24)
        len = sizeof line - 24;
    memcpy(line, what, len);
    do {
        digits[k++] = (char)('0' + n % 10u);
        n /= 10u;
    } while (n);
    while (k)
        line[len++] = digits[--k];
    line[len] = 0;
    plat_print(line);
}

static int check(int ok, const char *what)
{
    if (!ok) {
        char line[160] = "FAIL ";
        strncat(line, what, sizeof line - 6);
        plat_print(line);
    }
    return ok;
}

/* The handle's last failure, in words. */
static void say_error(const char *what)
{
    char line[320];
    size_t n = strlen(what);
    memcpy(line, what, n);
    line[n++] = ':';
    line[n++] = ' ';
#ifdef ECU_FW_QUIET
    /* The size report's build: no error texts linked (as the Rust firmware's `quiet`). */
    line[n] = 0;
    (void)u;
#else
    ecu_update_message(u, line + n, sizeof line - n);
#endif
    plat_print(line);
}

static const uint8_t *record(unsigned copy)
{
    return flash_mem + copy * NOR_SECTOR_SIZE;
}

/* Writes a boot record copy: erase its sector, program the record. */
static int write_copy(unsigned copy, const uint8_t *rec)
{
    uint32_t at = copy * NOR_SECTOR_SIZE;
    return check(nor_erase(&nor, at, at + NOR_SECTOR_SIZE) == 0 &&
                     nor_program(&nor, at, rec, ECU_BOOT_RECORD_LEN) == 0,
                 "boot record write");
}

static int apply(int32_t rc, const ecu_boot_write *w, const char *what)
{
    if (!check(rc == ECU_UPDATE_OK, what))
        return 0;
    return !w->needed || write_copy(w->copy, w->record);
}

/* One boot as the bootloader runs it: the decision, and its record write if any. */
static int boot(uint8_t *slot, uint8_t *kind)
{
    static struct ecu_boot_decision d;
    if (!check(ecu_boot_decide(record(0), record(1), ECU_BOOT_RECORD_LEN, &d) == ECU_BOOT_OK,
               "boot decision"))
        return 0;
    if (d.write_needed && !write_copy(d.write_copy, d.record))
        return 0;
    *slot = d.slot;
    *kind = d.kind;
    return 1;
}

static uint64_t floor_now(void)
{
    uint64_t floor = 0;
    if (ecu_update_boot_floor(record(0), record(1), ECU_BOOT_RECORD_LEN, &floor) != ECU_UPDATE_OK)
        plat_print("FAIL reading the floor");
    return floor;
}

/* Feeds `file` in `block`-byte pieces with the record's floor as the policy's. Returns the
 * installer's code; `*out` is filled on success. */
static int32_t install(const char *file, size_t block, ecu_update_installed *out)
{
    ecu_update_policy policy = {
        .trusted_keys = KEYS,
        .trusted_count = 1,
        .min_security_version = floor_now(),
    };
    int32_t rc = ecu_update_set_policy(u, &policy);
    int h = plat_open(file);
    unsigned long blocks = 0;
    size_t peak;
    ecu_update_progress p;
    if (!check(rc == ECU_UPDATE_OK, "set policy") || !check(h >= 0, "open the update"))
        return ECU_UPDATE_E_ARGUMENT;
    memset(&p, 0, sizeof p);
    plat_paint_stack();
    for (;;) {
        size_t n = plat_read(h, block_buf, block);
        if (n == 0) {
            rc = ecu_update_finish(u, out);
            break;
        }
        blocks++;
        rc = ecu_update_feed(u, block_buf, n, &p);
        if (rc != ECU_UPDATE_OK)
            break;
    }
    peak = plat_stack_peak();
    plat_close(h);
    if (peak > install_stack)
        install_stack = peak;
    say_num("blocks fed: ", blocks);
    say_num("install stack bytes: ", (unsigned long)peak);
    if (rc == ECU_UPDATE_OK) {
        say_num("objects: ", p.objects);
        say_num("parts: ", p.parts);
    } else {
        say_error("install refused");
        plat_print(ecu_update_strerror(rc));
    }
    return rc;
}

/* Compares `slot`'s image with the file `expect`, byte for byte. */
static int same_image(uint8_t slot, const char *expect)
{
    int h = plat_open(expect);
    uint32_t at = 0;
    if (!check(h >= 0, "open the expected image"))
        return 0;
    for (;;) {
        size_t want = plat_read(h, cmp_want, sizeof cmp_want), have = 0;
        if (!check(ecu_update_flash_read_image(u, slot, at, cmp_have, sizeof cmp_have, &have) ==
                       ECU_UPDATE_OK,
                   "image read") ||
            !check(want == have && memcmp(cmp_want, cmp_have, want) == 0,
                   "the slot's image equals the expected one")) {
            plat_close(h);
            return 0;
        }
        if (want == 0)
            break;
        at += (uint32_t)want;
    }
    plat_close(h);
    say_num("slot image equals the expected image, bytes: ", at);
    return 1;
}

static int retire_and_activate(uint8_t booted)
{
    ecu_boot_write w;
    int32_t rc = ecu_update_boot_retire(record(0), record(1), ECU_BOOT_RECORD_LEN,
                                        (uint8_t)(1u - booted), &w);
    if (!apply(rc, &w, "retire the slot to erase"))
        return 0;
    return check(ecu_update_flash_set_active(u, booted) == ECU_UPDATE_OK, "set the active slot");
}

/* A whole update: boot, install into the inactive slot, stage it, reboot through the
 * decision, verify, mark good, compare the image. */
static int update(const char *file, const char *expect, size_t block)
{
    uint8_t booted, kind, now, again;
    uint64_t floor;
    ecu_update_installed done;
    ecu_flash_slot_info info;
    ecu_boot_write w;
    bool staged = false, valid = false;
    if (!boot(&booted, &kind) || !retire_and_activate(booted))
        return 0;
    floor = floor_now();
    if (!check(install(file, block, &done) == ECU_UPDATE_OK, "install"))
        return 0;
    if (!check(ecu_update_flash_staged(u, &info, &staged) == ECU_UPDATE_OK && staged &&
                   memcmp(info.commit, done.commit, ECU_UPDATE_ID_LEN) == 0,
               "slot staged with the commit"))
        return 0;
    if (!apply(ecu_update_boot_stage(record(0), record(1), ECU_BOOT_RECORD_LEN,
                                     (uint8_t)(1u - booted), 3, done.commit,
                                     done.security_version, &w),
               &w, "stage"))
        return 0;
    /* Reboot. */
    if (!boot(&now, &kind) ||
        !check(now == 1u - booted && kind == ECU_BOOT_KIND_TRIAL,
               "the decision tries the new slot"))
        return 0;
    if (!check(ecu_update_flash_set_active(u, now) == ECU_UPDATE_OK, "set the active slot") ||
        !check(ecu_update_flash_slot_info(u, now, true, &info, &valid) == ECU_UPDATE_OK &&
                   valid && memcmp(info.commit, done.commit, ECU_UPDATE_ID_LEN) == 0,
               "the new slot verifies"))
        return 0;
    if (!check(floor_now() == floor, "staging and trying keep the floor"))
        return 0;
    if (!apply(ecu_update_boot_mark_good(record(0), record(1), ECU_BOOT_RECORD_LEN, now, &w), &w,
               "mark good"))
        return 0;
    if (!boot(&again, &kind) ||
        !check(again == now && kind == ECU_BOOT_KIND_CONFIRMED, "marked good"))
        return 0;
    if (!check(floor_now() == (done.security_version > floor ? done.security_version : floor),
               "mark-good raises the floor"))
        return 0;
    say_num("floor now: ", (unsigned long)floor_now());
    return same_image(now, expect);
}

static uint32_t crc_of(uint32_t from, uint32_t len)
{
    return ecu_boot_crc32(flash_mem + from, len);
}

/* An install that must be refused (by the floor when `below_floor`), leaving the active slot
 * and the boot record as they were. */
static int refuse(const char *file, const char *expect, size_t block, int below_floor)
{
    uint8_t booted, kind, now;
    uint32_t slot_before, records_before;
    ecu_update_installed done;
    ecu_flash_slot_info info;
    bool staged = true;
    int32_t rc;
    if (!boot(&booted, &kind) || !retire_and_activate(booted))
        return 0;
    uint32_t active = booted == 0 ? LAYOUT.slot_a : LAYOUT.slot_b;
    slot_before = crc_of(active, SLOT_SIZE);
    records_before = crc_of(0, 2u * NOR_SECTOR_SIZE);
    rc = install(file, block, &done);
    if (!check(rc != ECU_UPDATE_OK, "refused") ||
        !check((rc == ECU_UPDATE_E_BELOW_FLOOR) == (below_floor != 0),
               "refused for the expected reason") ||
        !check(ecu_update_last_error(u) == rc, "the handle keeps the code"))
        return 0;
    if (!check(ecu_update_flash_staged(u, &info, &staged) == ECU_UPDATE_OK && !staged,
               "nothing staged") ||
        !check(crc_of(active, SLOT_SIZE) == slot_before, "the active slot is untouched") ||
        !check(crc_of(0, 2u * NOR_SECTOR_SIZE) == records_before, "the boot record is untouched"))
        return 0;
    if (!boot(&now, &kind) ||
        !check(now == booted && kind == ECU_BOOT_KIND_CONFIRMED, "the old slot still boots"))
        return 0;
    return same_image(booted, expect);
}

int run_scenarios(size_t block)
{
    static const char FACTORY[] = "factory";
    ecu_boot_write w;
    ecu_flash_driver driver = {
        .ctx = &nor,
        .read = nor_read,
        .program = nor_program,
        .erase = nor_erase,
        .capacity = DEVICE,
        .write_size = NOR_WRITE_SIZE,
        .sector_size = NOR_SECTOR_SIZE,
    };
    int ok = 1;
    if (block == 0 || block > MAX_BLOCK)
        return check(0, "block size 1..4096");
    nor_init(&nor, flash_mem, flash_programmed, DEVICE);
    /* Factory state: slot A named "factory" and good, but empty; the first update goes to B. */
    if (!apply(ecu_update_boot_initial(ECU_UPDATE_SLOT_A, FACTORY, sizeof FACTORY - 1, &w), &w,
               "initial boot record"))
        return 0;
    if (!check(ecu_update_init(update_mem, sizeof update_mem, &u) == ECU_UPDATE_OK, "init") ||
        !check(ecu_update_use_flash(u, &driver, &LAYOUT, ECU_UPDATE_SLOT_A) == ECU_UPDATE_OK,
               "flash store"))
        return 0;
    say_num("ecu_update memory bytes: ", (unsigned long)sizeof update_mem);

    ok &= check(update("v1.update", "v1.bin", block), "scenario from scratch");
    plat_print(ok ? "scenario from scratch: PASS" : "scenario from scratch: FAIL");
    int r = update("v1-v2.update", "v2.bin", block);
    plat_print(r ? "scenario delta: PASS" : "scenario delta: FAIL");
    ok &= r;
    r = refuse("v2-flipped.update", "v2.bin", block, 0);
    plat_print(r ? "scenario one flipped byte: PASS" : "scenario one flipped byte: FAIL");
    ok &= r;
    r = refuse("v1.update", "v2.bin", block, 1);
    plat_print(r ? "scenario below the floor: PASS" : "scenario below the floor: FAIL");
    ok &= r;
    say_num("c-install-stack-bytes: ", (unsigned long)install_stack);
    say_num("flash programs: ", nor.programs);
    say_num("flash erases: ", nor.erases);
    return ok;
}
