/*
 * Format detection tests (store/detect*.c) on the real boot images in $IMGSTORE_FIXTURES (see
 * its PROVENANCE.md), read in place through pread and never copied: what each one is detected
 * as, that a 14 MB kernel is detected from a few small windows, and that each cut short is
 * refused. Every test skips when the fixtures directory is absent.
 */
#include "store/store_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_FIXTURES "/work/shared/fixtures/real"

/* A fixture read through pread, optionally cut at `limit` bytes, counting what was read. */
typedef struct {
    int fd;
    uint64_t limit;
    uint64_t bytes_read;
    size_t largest_read;
} file_source;

static int file_read_at(size_t *out_len, void *buf, size_t len, uint64_t offset, void *payload)
{
    file_source *src = payload;
    size_t want = 0;
    ssize_t got;

    *out_len = 0;
    if (offset < src->limit)
        want = src->limit - offset < len ? (size_t)(src->limit - offset) : len;
    if (want == 0)
        return 0;
    got = pread(src->fd, buf, want, (off_t)offset);
    if (got < 0)
        return imgstore_error_set(IMGSTORE_ERROR, "pread: %s", strerror(errno));
    src->bytes_read += (uint64_t)got;
    if ((size_t)got > src->largest_read)
        src->largest_read = (size_t)got;
    *out_len = (size_t)got;
    return 0;
}

static const char *fixtures_dir(void)
{
    const char *dir = getenv("IMGSTORE_FIXTURES");

    return dir && *dir ? dir : DEFAULT_FIXTURES;
}

/* Detect fixture `name`, cut at `limit` bytes (0: whole). Skips the test without fixtures. */
static int detect_fixture(imgstore_file_info *info, const char *name, uint64_t limit,
                          file_source *src_out)
{
    char path[4096];
    file_source src = {-1, 0, 0, 0};
    struct stat st;
    int rc;

    snprintf(path, sizeof(path), "%s/%s", fixtures_dir(), name);
    if ((src.fd = open(path, O_RDONLY)) < 0) {
        print_message("fixture %s not found (IMGSTORE_FIXTURES=%s), skipping\n", path,
                      fixtures_dir());
        skip();
    }
    assert_int_equal(fstat(src.fd, &st), 0);
    src.limit = limit && limit < (uint64_t)st.st_size ? limit : (uint64_t)st.st_size;
    imgstore_error_clear();
    rc = imgstore_store__detect(info, name, src.limit, file_read_at, &src);
    close(src.fd);
    if (src_out)
        *src_out = src;
    return rc;
}

static void assert_message_has(const char *needle)
{
    if (!strstr(imgstore_error_last(), needle))
        fail_msg("message \"%s\" lacks \"%s\"", imgstore_error_last(), needle);
}

/* ---- real images ----------------------------------------------------------------------- */

static void detect_real_ipxe_lkrn_is_bzimage(void **state)
{
    imgstore_file_info info;

    (void)state;
    assert_int_equal(detect_fixture(&info, "ipxe.lkrn", 0, NULL), 0);
    assert_string_equal(info.kind, "kernel");
    assert_string_equal(info.format, "bzimage");
    assert_string_equal(info.arch, "x86");
    assert_string_equal(info.boot_protocol, "2.07");
    assert_string_equal(info.kernel_version, "1.0.0+git-20190125.36a4c85-5.1");
    assert_false(info.efi);
}

static void detect_real_memtest_bin_is_bzimage(void **state)
{
    imgstore_file_info info;

    (void)state;
    assert_int_equal(detect_fixture(&info, "memtest86+x64.bin", 0, NULL), 0);
    assert_string_equal(info.kind, "kernel");
    assert_string_equal(info.format, "bzimage");
    assert_string_equal(info.boot_protocol, "2.12");
    assert_string_equal(info.kernel_version, "Memtest86+ v6.10");
    assert_false(info.efi);
}

static void detect_real_vmlinuz_reads_kernel_version_in_small_windows(void **state)
{
    imgstore_file_info info;
    file_source src;

    (void)state;
    assert_int_equal(detect_fixture(&info, "vmlinuz-6.1.0-56-cloud-amd64", 0, &src), 0);
    assert_string_equal(info.kind, "kernel");
    assert_string_equal(info.format, "bzimage");
    assert_string_equal(info.boot_protocol, "2.15");
    assert_true(strncmp(info.kernel_version, "6.1.0-56-cloud-amd64 ", 21) == 0);
    /* The Debian kernel carries an EFI stub: it is a PE image too. */
    assert_true(info.efi);
    /* 14 MB file; detection reads its head and a few windows. */
    assert_true(src.bytes_read <= 128 * 1024);
    assert_true(src.largest_read <= 64 * 1024);
}

static void detect_real_efi_applications(void **state)
{
    imgstore_file_info info;

    (void)state;
    assert_int_equal(detect_fixture(&info, "ipxe.efi", 0, NULL), 0);
    assert_string_equal(info.kind, "efi");
    assert_string_equal(info.format, "pe-efi");
    assert_string_equal(info.arch, "x86_64");
    /* memtest86+x64.efi is also a Linux boot protocol image (file(1) agrees), and a file that
     * is both is a kernel with an EFI stub. */
    assert_int_equal(detect_fixture(&info, "memtest86+x64.efi", 0, NULL), 0);
    assert_string_equal(info.kind, "kernel");
    assert_string_equal(info.format, "bzimage");
    assert_true(info.efi);
}

static void detect_real_isos_are_hybrid_and_boot_on_efi(void **state)
{
    imgstore_file_info info;

    (void)state;
    assert_int_equal(detect_fixture(&info, "ipxe.iso", 0, NULL), 0);
    assert_string_equal(info.kind, "disk");
    assert_string_equal(info.format, "iso9660");
    assert_string_equal(info.volume_id, "ISOIMAGE");
    assert_true(info.hybrid);
    assert_true(info.efi);
    assert_int_equal(detect_fixture(&info, "memtest86+x64.iso", 0, NULL), 0);
    assert_string_equal(info.format, "iso9660");
    assert_string_equal(info.volume_id, "MT86PLUS_64");
    assert_true(info.hybrid);
    assert_true(info.efi);
}

static void detect_real_initrd_is_gzip_cpio(void **state)
{
    imgstore_file_info info;

    (void)state;
    assert_int_equal(detect_fixture(&info, "initrd-busybox.cpio.gz", 0, NULL), 0);
    assert_string_equal(info.kind, "initrd");
    assert_string_equal(info.format, "cpio");
    assert_string_equal(info.compression, "gzip");
}

static void detect_real_cmdline(void **state)
{
    imgstore_file_info info;

    (void)state;
    assert_int_equal(detect_fixture(&info, "cmdline.txt", 0, NULL), 0);
    assert_string_equal(info.kind, "cmdline");
    assert_string_equal(info.format, "text");
    assert_string_equal(info.text, "console=ttyS0 rdinit=/init quiet");
}

static void detect_refuses_truncated_real_images(void **state)
{
    imgstore_file_info info;

    (void)state;
    assert_int_equal(detect_fixture(&info, "ipxe.iso", 40 * 1024, NULL), IMGSTORE_EINVALID);
    assert_message_has("ipxe.iso: truncated ISO 9660: the volume ends at byte 1730560 but the "
                       "file has 40960 bytes");
    assert_int_equal(detect_fixture(&info, "ipxe.iso", 33 * 1024, NULL), IMGSTORE_EINVALID);
    assert_message_has("truncated ISO 9660");
    assert_int_equal(detect_fixture(&info, "vmlinuz-6.1.0-56-cloud-amd64", 1024 * 1024, NULL),
                     IMGSTORE_EINVALID);
    assert_message_has("truncated bzImage: the kernel ends at byte");
    assert_int_equal(detect_fixture(&info, "ipxe.lkrn", 2048, NULL), IMGSTORE_EINVALID);
    assert_message_has("truncated bzImage: the setup code ends at byte 3072");
    assert_int_equal(detect_fixture(&info, "ipxe.efi", 400 * 1024, NULL), IMGSTORE_EINVALID);
    assert_message_has("truncated PE");
    assert_string_equal(info.kind, "");
    /* issue #10: a hybrid ISO cut inside its EFI system partition (the ISO volume itself
     * ends at 1691648, so only the EFI extents can tell) is not an EFI-bootable image */
    assert_int_equal(detect_fixture(&info, "memtest86+x64.iso", 3000000, NULL), IMGSTORE_EINVALID);
    assert_message_has("memtest86+x64.iso: truncated hybrid ISO: the EFI boot image ends at "
                       "byte 5885952 but the file has 3000000 bytes");
    /* and a whole one still detects as EFI-bootable, every extent inside the file */
    assert_int_equal(detect_fixture(&info, "memtest86+x64.iso", 0, NULL), 0);
    assert_true(info.efi);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(detect_real_ipxe_lkrn_is_bzimage),
        cmocka_unit_test(detect_real_memtest_bin_is_bzimage),
        cmocka_unit_test(detect_real_vmlinuz_reads_kernel_version_in_small_windows),
        cmocka_unit_test(detect_real_efi_applications),
        cmocka_unit_test(detect_real_isos_are_hybrid_and_boot_on_efi),
        cmocka_unit_test(detect_real_initrd_is_gzip_cpio),
        cmocka_unit_test(detect_real_cmdline),
        cmocka_unit_test(detect_refuses_truncated_real_images),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
