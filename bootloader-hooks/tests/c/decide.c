/* Runs the header's plain-C decision on two record copies read from files.
 * usage: decide COPY0 COPY1 OUT_RECORD
 * prints: rc=<rc> slot=<0|1> kind=<k> write=<0|1> copy=<0|1> sizeof=<n> offsetof_record=<n>
 *         floor=<n> sv_a=<n> sv_b=<n> (of the current copy; 0 when none is valid)
 * and writes the new record to OUT_RECORD when write=1. Built with -DWITH_RUST and linked
 * against the crate's staticlib, it also calls the Rust ecu_boot_decide() and prints
 * rust_equal=1 when both agree on every field and byte. */
#include <stdio.h>
#include <stdlib.h>
#include "ecu_boot_state.h"

static void read_file(const char *path, uint8_t *buf)
{
    FILE *f = fopen(path, "rb");
    if (!f || fread(buf, 1, ECU_BOOT_RECORD_LEN, f) != ECU_BOOT_RECORD_LEN) {
        fprintf(stderr, "cannot read %s\n", path);
        exit(2);
    }
    fclose(f);
}

int main(int argc, char **argv)
{
    static uint8_t c0[ECU_BOOT_RECORD_LEN], c1[ECU_BOOT_RECORD_LEN];
    struct ecu_boot_decision d;
    if (argc != 4)
        return 2;
    read_file(argv[1], c0);
    read_file(argv[2], c1);
    int32_t rc = ecu_boot_decide_c(c0, c1, &d);
    printf("rc=%d slot=%u kind=%u write=%u copy=%u sizeof=%zu offsetof_record=%zu\n", (int)rc,
           d.slot, d.kind, d.write_needed, d.write_copy, sizeof(struct ecu_boot_decision),
           offsetof(struct ecu_boot_decision, record));
    {
        int cur = ecu_boot_current(c0, c1);
        const uint8_t *r = cur == 1 ? c1 : c0;
        printf("floor=%llu sv_a=%llu sv_b=%llu\n",
               cur < 0 ? 0ull : (unsigned long long)ecu_boot_floor(r),
               cur < 0 ? 0ull : (unsigned long long)ecu_boot_security_version(r, ECU_BOOT_SLOT_A),
               cur < 0 ? 0ull : (unsigned long long)ecu_boot_security_version(r, ECU_BOOT_SLOT_B));
    }
#ifdef WITH_RUST
    /* The Rust C ABI function must agree with the plain-C decision field by field. */
    {
        struct ecu_boot_decision r;
        int32_t rrc = ecu_boot_decide(c0, c1, ECU_BOOT_RECORD_LEN, &r);
        int equal = rrc == rc;
        if (equal && rc == ECU_BOOT_OK) {
            equal = r.slot == d.slot && r.kind == d.kind && r.write_needed == d.write_needed;
            if (equal && d.write_needed) {
                equal = r.write_copy == d.write_copy;
                for (size_t i = 0; equal && i < ECU_BOOT_RECORD_LEN; i++)
                    equal = r.record[i] == d.record[i];
            }
        }
        printf("rust_equal=%d\n", equal);
        if (ecu_boot_decide(NULL, c1, ECU_BOOT_RECORD_LEN, &r) != ECU_BOOT_EINVAL)
            printf("rust_einval=0\n");
    }
#endif
    if (rc == ECU_BOOT_OK && d.write_needed) {
        FILE *f = fopen(argv[3], "wb");
        if (!f || fwrite(d.record, 1, ECU_BOOT_RECORD_LEN, f) != ECU_BOOT_RECORD_LEN)
            return 2;
        fclose(f);
    }
    return 0;
}
