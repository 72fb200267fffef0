/*
 * Runs docs/C-API.md's minimal C firmware on Linux: the update comes on standard input.
 * `doc-firmware install` expects it installed, tried and confirmed in slot B; `doc-firmware
 * refuse` expects it refused with slot A still booting.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void factory_reset(void);
int boot_slot(void);
int32_t install_update(uint8_t booted);
int32_t confirm_boot(uint8_t booted);

size_t transport_receive(uint8_t *buf, size_t cap)
{
    return fread(buf, 1, cap, stdin);
}

int main(int argc, char **argv)
{
    int refuse = argc > 1 && strcmp(argv[1], "refuse") == 0;
    factory_reset();
    if (boot_slot() != 0)
        return 10;
    int32_t rc = install_update(0);
    printf("install_update: %d\n", (int)rc);
    if (refuse) {
        if (rc == 0 || boot_slot() != 0)
            return 11;
        puts("DOC FIRMWARE PASS");
        return 0;
    }
    if (rc != 0 || boot_slot() != 1 || confirm_boot(1) != 0 || boot_slot() != 1)
        return 12;
    puts("DOC FIRMWARE PASS");
    return 0;
}
