/*
 * Format detection tests (store/detect*.c) on synthetic headers built here from their
 * specifications: boot protocol and PE images, ISO 9660, virtual disks, partition tables,
 * archives, compressed initrds and text, each with the truncated or corrupted variants that must
 * be refused. ELF is in test_detect_elf.c, the real images in test_detect_real.c.
 */
#include "store/store_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "detect_test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ---- reading ------------------------------------------------------------------------- */

static void assert_message_has(const char *needle)
{
    if (!strstr(imgstore_error_last(), needle))
        fail_msg("message \"%s\" lacks \"%s\"", imgstore_error_last(), needle);
}

static void assert_refused(const char *name, const void *data, size_t len, const char *needle)
{
    imgstore_file_info info;

    assert_int_equal(detect(&info, name, data, len), IMGSTORE_EINVALID);
    assert_message_has(needle);
    assert_string_equal(info.kind, "");
}

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* ---- boot images ----------------------------------------------------------------------- */

/* A boot-protocol image: boot sector, one setup sector, `payload` bytes of kernel. */
static uint8_t *build_bzimage(size_t *len_out, size_t payload)
{
    size_t len = 1024 + payload;
    uint8_t *img = calloc(1, len);

    assert_non_null(img);
    img[0x1F1] = 1;
    put_le32(img + 0x1F4, (uint32_t)((payload + 15) / 16));
    img[0x1FE] = 0x55;
    img[0x1FF] = 0xAA;
    memcpy(img + 0x202, "HdrS", 4);
    put_le16(img + 0x206, 0x020F);
    put_le16(img + 0x20E, 0x100);
    strcpy((char *)img + 0x300, "6.6.0-test (ci@example) #1 SMP");
    *len_out = len;
    return img;
}

static void detect_bzimage_reads_protocol_and_version(void **state)
{
    imgstore_file_info info;
    size_t len;
    uint8_t *img = build_bzimage(&len, 3000);

    (void)state;
    assert_int_equal(detect(&info, "vmlinuz", img, len), 0);
    assert_string_equal(info.kind, "kernel");
    assert_string_equal(info.format, "bzimage");
    assert_string_equal(info.boot_protocol, "2.15");
    assert_string_equal(info.kernel_version, "6.6.0-test (ci@example) #1 SMP");
    assert_false(info.efi);
    /* An unterminated or unprintable version string is left out, not an error. */
    memset(img + 0x300, 'x', 200);
    assert_int_equal(detect(&info, "vmlinuz", img, len), 0);
    assert_string_equal(info.kernel_version, "");
    /* An EFI stub makes it a PE file as well; it stays a kernel. */
    memcpy(img, "MZ", 2);
    put_le32(img + 0x3C, 0x80);
    memcpy(img + 0x80, "PE\0\0", 4);
    assert_int_equal(detect(&info, "vmlinuz", img, len), 0);
    assert_string_equal(info.format, "bzimage");
    assert_true(info.efi);
    free(img);
}

static void detect_refuses_truncated_bzimage(void **state)
{
    size_t len;
    uint8_t *img = build_bzimage(&len, 3000);

    (void)state;
    assert_refused("vmlinuz", img, 1000, "truncated bzImage: the setup code ends at byte 1024");
    assert_refused("vmlinuz", img, len - 100, "truncated bzImage: the kernel ends at byte 4032");
    free(img);
}

/* A PE32+ image: MZ header, PE header at 0x80, one section of 0x200 bytes at 0x200. */
static uint8_t *build_pe(size_t *len_out, uint16_t machine, uint16_t subsystem)
{
    uint8_t *img = calloc(1, 0x400);
    uint8_t *opt = img + 0x80 + 24;
    uint8_t *section = opt + 240;

    assert_non_null(img);
    memcpy(img, "MZ", 2);
    put_le32(img + 0x3C, 0x80);
    memcpy(img + 0x80, "PE\0\0", 4);
    put_le16(img + 0x84, machine);
    put_le16(img + 0x86, 1);
    put_le16(img + 0x80 + 20, 240);
    put_le16(opt, 0x20B);
    put_le16(opt + 68, subsystem);
    put_le32(opt + 108, 16);
    memcpy(section, ".text", 5);
    put_le32(section + 16, 0x200);
    put_le32(section + 20, 0x200);
    *len_out = 0x400;
    return img;
}

static void detect_pe_efi_application_and_other_pe(void **state)
{
    imgstore_file_info info;
    size_t len;
    uint8_t *img = build_pe(&len, 0xAA64, 10);

    (void)state;
    assert_int_equal(detect(&info, "BOOTAA64.EFI", img, len), 0);
    assert_string_equal(info.kind, "efi");
    assert_string_equal(info.format, "pe-efi");
    assert_string_equal(info.arch, "aarch64");
    put_le16(img + 0x80 + 24 + 68, 3); /* Windows console */
    assert_int_equal(detect(&info, "tool.exe", img, len), 0);
    assert_string_equal(info.kind, "unknown");
    assert_string_equal(info.format, "pe");
    free(img);
}

static void detect_refuses_truncated_pe(void **state)
{
    size_t len;
    uint8_t *img = build_pe(&len, 0x8664, 10);

    (void)state;
    assert_refused("app.efi", img, 0x300, "truncated PE: section 0 ends at byte 1024");
    assert_refused("app.efi", img, 0x120, "truncated PE: the optional header ends");
    /* A signature table past the end of the file. */
    put_le32(img + 0x80 + 24 + 112 + 32, 0x400);
    put_le32(img + 0x80 + 24 + 112 + 36, 0x100);
    assert_refused("app.efi", img, len, "truncated PE: the certificate table ends");
    free(img);
}

/* ---- disks ----------------------------------------------------------------------------- */

static void detect_iso9660_reads_volume_and_el_torito(void **state)
{
    const size_t len = 20 * 2048;
    uint8_t *img = calloc(1, len);
    uint8_t *pvd = img + 16 * 2048, *boot = img + 17 * 2048, *catalog = img + 19 * 2048;
    imgstore_file_info info;

    (void)state;
    assert_non_null(img);
    pvd[0] = 1;
    memcpy(pvd + 1, "CD001\1", 6);
    memcpy(pvd + 40, "TESTVOL                         ", 32);
    put_le32(pvd + 80, 20);
    put_le16(pvd + 128, 2048);
    boot[0] = 0;
    memcpy(boot + 1, "CD001\1EL TORITO SPECIFICATION", 29);
    put_le32(boot + 0x47, 19);
    memcpy(img + 18 * 2048, "\377CD001\1", 7);
    catalog[0] = 1;     /* validation entry, x86 */
    catalog[64] = 0x91; /* final section header */
    catalog[65] = 0xEF; /* EFI */
    assert_int_equal(detect(&info, "boot.iso", img, len), 0);
    assert_string_equal(info.kind, "disk");
    assert_string_equal(info.format, "iso9660");
    assert_string_equal(info.volume_id, "TESTVOL");
    assert_true(info.efi);
    assert_false(info.hybrid);
    /* An MBR partition makes it hybrid. */
    img[446 + 4] = 0x17;
    put_le32(img + 446 + 12, 80);
    img[510] = 0x55;
    img[511] = 0xAA;
    assert_int_equal(detect(&info, "boot.iso", img, len), 0);
    assert_true(info.hybrid);
    put_le32(pvd + 80, 21);
    assert_refused("boot.iso", img, len, "truncated ISO 9660: the volume ends at byte 43008");
    put_le32(pvd + 80, 20);
    put_le16(pvd + 128, 0);
    assert_refused("boot.iso", img, len, "logical block size 0");
    free(img);
}

static uint8_t *build_qcow2(size_t *len_out)
{
    uint8_t *img = calloc(1, 1024);

    assert_non_null(img);
    memcpy(img, "QFI\xfb", 4);
    put_be32(img + 4, 3);
    put_be32(img + 20, 16);          /* 64 KiB clusters */
    put_be64(img + 24, 10ull << 30); /* 10 GiB */
    put_be32(img + 36, 2);           /* L1 entries */
    put_be64(img + 40, 512);         /* L1 table */
    put_be64(img + 48, 0);           /* no refcount table in this sketch */
    *len_out = 1024;
    return img;
}

static void detect_qcow2_reads_virtual_size(void **state)
{
    imgstore_file_info info;
    size_t len;
    uint8_t *img = build_qcow2(&len);

    (void)state;
    assert_int_equal(detect(&info, "disk.qcow2", img, len), 0);
    assert_string_equal(info.kind, "disk");
    assert_string_equal(info.format, "qcow2");
    assert_true(info.virtual_size == 10ull << 30);
    assert_refused("disk.qcow2", img, 520, "truncated qcow2: the L1 table ends at byte 528");
    assert_refused("disk.qcow2", img, 40, "truncated qcow2: the header needs 72 bytes");
    put_be64(img + 24, (1ull << 53) + 1);
    assert_refused("disk.qcow2", img, len, "beyond 2^53");
    put_be32(img + 4, 9);
    assert_refused("disk.qcow2", img, len, "unknown version 9");
    free(img);
}

static void put_vhd_footer(uint8_t *footer, uint64_t disk_size, uint32_t type)
{
    memcpy(footer, "conectix", 8);
    put_be64(footer + 16, type == 2 ? UINT64_MAX : 512);
    put_be64(footer + 40, disk_size);
    put_be64(footer + 48, disk_size);
    put_be32(footer + 60, type);
}

static void detect_vhd_fixed_and_dynamic(void **state)
{
    const size_t disk = 64 * 1024;
    uint8_t *img = calloc(1, disk + 512);
    imgstore_file_info info;

    (void)state;
    assert_non_null(img);
    /* A fixed VHD is the raw disk (here with an MBR) followed by the footer. */
    img[446 + 4] = 0x83;
    put_le32(img + 446 + 12, 100);
    img[510] = 0x55;
    img[511] = 0xAA;
    put_vhd_footer(img + disk, disk, 2);
    assert_int_equal(detect(&info, "disk.vhd", img, disk + 512), 0);
    assert_string_equal(info.format, "vhd");
    assert_true(info.virtual_size == disk);
    put_vhd_footer(img + disk, disk * 2, 2);
    assert_refused("disk.vhd", img, disk + 512, "truncated VHD: the fixed disk is 131072 bytes");
    /* A dynamic VHD starts with a copy of its footer and must end with the footer. */
    memset(img, 0, disk + 512);
    put_vhd_footer(img, 1ull << 30, 3);
    put_vhd_footer(img + disk, 1ull << 30, 3);
    assert_int_equal(detect(&info, "disk.vhd", img, disk + 512), 0);
    assert_true(info.virtual_size == 1ull << 30);
    assert_refused("disk.vhd", img, disk, "truncated VHD");
    free(img);
}

static void detect_vhdx_reads_virtual_size_from_metadata(void **state)
{
    const size_t meta = 1024 * 1024, len = meta + 64 * 1024 + 8;
    static const uint8_t metadata_region[16] = {0x06, 0xA2, 0x7C, 0x8B, 0x90, 0x47, 0x9A, 0x4B,
                                                0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E};
    static const uint8_t disk_size_item[16] = {0x24, 0x42, 0xA5, 0x2F, 0x1B, 0xCD, 0x76, 0x48,
                                               0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8};
    uint8_t *img = calloc(1, len);
    uint8_t *regions = img + 192 * 1024;
    imgstore_file_info info;

    (void)state;
    assert_non_null(img);
    memcpy(img, "vhdxfile", 8);
    memcpy(regions, "regi", 4);
    put_le32(regions + 8, 2);
    memset(regions + 16, 0x11, 16); /* some other region first */
    memcpy(regions + 48, metadata_region, 16);
    put_le64(regions + 48 + 16, meta);
    put_le32(regions + 48 + 24, 64 * 1024 + 8);
    memcpy(img + meta, "metadata", 8);
    put_le16(img + meta + 10, 1);
    memcpy(img + meta + 32, disk_size_item, 16);
    put_le32(img + meta + 32 + 16, 64 * 1024);
    put_le32(img + meta + 32 + 20, 8);
    put_le64(img + meta + 64 * 1024, 8ull << 30);
    assert_int_equal(detect(&info, "disk.vhdx", img, len), 0);
    assert_string_equal(info.format, "vhdx");
    assert_true(info.virtual_size == 8ull << 30);
    assert_refused("disk.vhdx", img, 64 * 1024, "truncated VHDX: the region table ends");
    assert_refused("disk.vhdx", img, meta + 100, "truncated VHDX: the metadata region");
    free(img);
}

static void detect_vmdk_sparse_and_descriptor(void **state)
{
    static const char descriptor[] = "# Disk DescriptorFile\nversion=1\nCID=fffffffe\n"
                                     "createType=\"twoGbMaxExtentFlat\"\n\n"
                                     "# Extent description\n"
                                     "RW 4194304 FLAT \"disk-f001.vmdk\" 0\n"
                                     "RW 2048 FLAT \"disk-f002.vmdk\" 0\n";
    uint8_t sparse[1024] = {0};
    imgstore_file_info info;

    (void)state;
    memcpy(sparse, "KDMV", 4);
    put_le32(sparse + 4, 1);
    put_le64(sparse + 12, 2097152);
    assert_int_equal(detect(&info, "disk.vmdk", sparse, sizeof(sparse)), 0);
    assert_string_equal(info.format, "vmdk");
    assert_true(info.virtual_size == 1ull << 30);
    assert_int_equal(detect(&info, "disk.vmdk", descriptor, sizeof(descriptor) - 1), 0);
    assert_string_equal(info.kind, "disk");
    assert_string_equal(info.format, "vmdk");
    assert_true(info.virtual_size == (4194304ull + 2048) * 512);
    assert_refused("disk.vmdk", sparse, 100, "truncated VMDK");
}

static void detect_raw_disks_by_partition_table(void **state)
{
    static const uint8_t esp[16] = {0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11,
                                    0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B};
    uint8_t disk[34 * 512] = {0};
    imgstore_file_info info;

    (void)state;
    /* Protective MBR, GPT header in LBA 1, partition array in LBA 2 with an ESP second. */
    disk[446 + 4] = 0xEE;
    put_le32(disk + 446 + 8, 1);
    put_le32(disk + 446 + 12, 33);
    disk[510] = 0x55;
    disk[511] = 0xAA;
    memcpy(disk + 512, "EFI PART", 8);
    put_le64(disk + 512 + 72, 2);
    put_le32(disk + 512 + 80, 128);
    put_le32(disk + 512 + 84, 128);
    memset(disk + 1024, 0xAB, 16);
    memcpy(disk + 1024 + 128, esp, 16);
    assert_int_equal(detect(&info, "disk.img", disk, sizeof(disk)), 0);
    assert_string_equal(info.kind, "disk");
    assert_string_equal(info.format, "raw");
    assert_string_equal(info.partition_table, "gpt");
    assert_true(info.efi);
    /* issue #10: an ESP running past the end of the file is a cut-off disk, not EFI-bootable */
    put_le64(disk + 1024 + 128 + 32, 20);
    put_le64(disk + 1024 + 128 + 40, 40);
    assert_refused("disk.img", disk, sizeof(disk),
                   "truncated GPT disk: the EFI system partition ends at byte 20992 but the file "
                   "has 17408 bytes");
    put_le64(disk + 1024 + 128 + 40, 33);
    assert_int_equal(detect(&info, "disk.img", disk, sizeof(disk)), 0);
    assert_true(info.efi);
    /* the same in an MBR: an 0xEF partition past the end */
    memset(disk + 512, 0, sizeof(disk) - 512);
    disk[446 + 4] = 0xEF;
    put_le32(disk + 446 + 12, 40);
    assert_refused("disk.img", disk, sizeof(disk),
                   "truncated disk image: the EFI system "
                   "partition ends at byte 20992");
    put_le32(disk + 446 + 12, 33);
    /* An MBR disk with one Linux partition. */
    memset(disk + 512, 0, sizeof(disk) - 512);
    disk[446 + 4] = 0x83;
    assert_int_equal(detect(&info, "disk.img", disk, sizeof(disk)), 0);
    assert_string_equal(info.partition_table, "mbr");
    assert_false(info.efi);
    /* A boot sector whose "entries" are code is not a partition table. */
    disk[446] = 0x31;
    assert_int_equal(detect(&info, "boot.bin", disk, sizeof(disk)), 0);
    assert_string_equal(info.kind, "unknown");
    assert_string_equal(info.format, "unknown");
}

/* ---- archives -------------------------------------------------------------------------- */

static void build_tar(uint8_t *tar, size_t len)
{
    unsigned sum = 0;

    assert_true(len >= 1024);
    memset(tar, 0, len);
    strcpy((char *)tar, "hello.txt");
    memcpy(tar + 100, "0000644", 8);
    memcpy(tar + 108, "0000000", 8);
    memcpy(tar + 116, "0000000", 8);
    memcpy(tar + 124, "00000000005", 12);
    memcpy(tar + 136, "14531200000", 12);
    memset(tar + 148, ' ', 8);
    tar[156] = '0';
    memcpy(tar + 257, "ustar", 6);
    memcpy(tar + 263, "00", 2);
    for (int i = 0; i < 512; i++)
        sum += tar[i];
    snprintf((char *)tar + 148, 8, "%06o", sum);
    memcpy(tar + 512, "hello", 5);
}

static size_t gzip_bytes(uint8_t *out, size_t cap, const uint8_t *in, size_t len)
{
    z_stream zs;

    memset(&zs, 0, sizeof(zs));
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)len;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    deflateEnd(&zs);
    return cap - zs.avail_out;
}

static void detect_tar_plain_and_gzipped(void **state)
{
    uint8_t tar[2048], gz[2048];
    imgstore_file_info info;
    size_t gz_len;

    (void)state;
    build_tar(tar, sizeof(tar));
    assert_int_equal(detect(&info, "rootfs.tar", tar, sizeof(tar)), 0);
    assert_string_equal(info.kind, "archive");
    assert_string_equal(info.format, "tar");
    assert_string_equal(info.compression, "none");
    gz_len = gzip_bytes(gz, sizeof(gz), tar, sizeof(tar));
    assert_int_equal(detect(&info, "rootfs.tar.gz", gz, gz_len), 0);
    assert_string_equal(info.kind, "archive");
    assert_string_equal(info.format, "tar");
    assert_string_equal(info.compression, "gzip");
    tar[0] = 'j';
    assert_refused("rootfs.tar", tar, sizeof(tar), "checksum");
    assert_refused("rootfs.tar", tar, 300, "truncated tar");
}

static void detect_gzip_contents(void **state)
{
    static const char newc[] = "07070100000001000081a4000000000000000000000001";
    static const char words[] = "just some words, compressed";
    uint8_t gz[1024];
    imgstore_file_info info;
    size_t gz_len;

    (void)state;
    gz_len = gzip_bytes(gz, sizeof(gz), (const uint8_t *)newc, sizeof(newc) - 1);
    assert_int_equal(detect(&info, "initrd.img", gz, gz_len), 0);
    assert_string_equal(info.kind, "initrd");
    assert_string_equal(info.format, "cpio");
    assert_string_equal(info.compression, "gzip");
    gz_len = gzip_bytes(gz, sizeof(gz), (const uint8_t *)words, sizeof(words) - 1);
    assert_int_equal(detect(&info, "notes.gz", gz, gz_len), 0);
    assert_string_equal(info.kind, "unknown");
    assert_string_equal(info.format, "gzip");
    assert_string_equal(info.compression, "gzip");
    /* A valid gzip header over garbage deflate data. */
    memset(gz + 10, 0xFF, 64);
    assert_refused("initrd.img", gz, 74, "bad gzip");
}

static void detect_initrds_by_magic(void **state)
{
    static const struct {
        const char *bytes;
        size_t len;
        const char *compression;
    } cases[] = {
        {"070701000000", 12, "none"},       {"070707000000", 12, "none"},
        {"\3757zXZ\0\0\4", 8, "xz"},        {"\x28\xb5\x2f\xfd\0\0", 6, "zstd"},
        {"\x02\x21\x4c\x18\0\0", 6, "lz4"}, {"\x04\x22\x4d\x18\0\0", 6, "lz4"},
        {"BZh91AY&SY\0\0", 12, "bzip2"},
    };
    imgstore_file_info info;

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(detect(&info, "initrd", cases[i].bytes, cases[i].len), 0);
        assert_string_equal(info.kind, "initrd");
        assert_string_equal(info.format, "cpio");
        assert_string_equal(info.compression, cases[i].compression);
    }
}

/* ---- text ------------------------------------------------------------------------------ */

static void detect_cmdline_trims_trailing_newlines(void **state)
{
    static const char text[] = "console=hvc0 root=/dev/xvda1 ro\n\n";
    imgstore_file_info info;

    (void)state;
    assert_int_equal(detect(&info, "cmdline", text, sizeof(text) - 1), 0);
    assert_string_equal(info.kind, "cmdline");
    assert_string_equal(info.format, "text");
    assert_string_equal(info.text, "console=hvc0 root=/dev/xvda1 ro");
    assert_int_equal(detect(&info, "kernel-cmdline.txt", "", 0), 0);
    assert_string_equal(info.kind, "cmdline");
    assert_string_equal(info.text, "");
}

static void detect_xl_config_by_name_or_kernel_line(void **state)
{
    static const char config[] = "name = \"app\"\nkernel = \"app.xen\"\nmemory = 256\n";
    static const char other[] = "name = \"app\"\nmemory = 256\n";
    imgstore_file_info info;

    (void)state;
    assert_int_equal(detect(&info, "app.cfg", config, sizeof(config) - 1), 0);
    assert_string_equal(info.kind, "config");
    assert_string_equal(info.format, "xl");
    assert_string_equal(info.text, config);
    assert_int_equal(detect(&info, "app.xl", other, sizeof(other) - 1), 0);
    assert_string_equal(info.kind, "config");
    assert_string_equal(info.text, other);
    assert_int_equal(detect(&info, "README", other, sizeof(other) - 1), 0);
    assert_string_equal(info.kind, "unknown");
    assert_string_equal(info.format, "text");
    assert_string_equal(info.text, "");
}

static void detect_text_limits(void **state)
{
    char *big = malloc(8192);
    imgstore_file_info info;

    (void)state;
    assert_non_null(big);
    /* Longer than a cmdline may be: still text, but no longer a cmdline. */
    memset(big, 'a', 8192);
    assert_int_equal(detect(&info, "cmdline", big, 8192), 0);
    assert_string_equal(info.kind, "unknown");
    assert_string_equal(info.format, "text");
    /* UTF-8 is text; a lone continuation byte or a NUL is not. */
    assert_int_equal(detect(&info, "cmdline", "quiet caf\xc3\xa9", 11), 0);
    assert_string_equal(info.kind, "cmdline");
    assert_int_equal(detect(&info, "cmdline", "quiet \x80", 7), 0);
    assert_string_equal(info.format, "unknown");
    assert_int_equal(detect(&info, "cmdline", "quiet\0", 6), 0);
    assert_string_equal(info.kind, "unknown");
    assert_string_equal(info.format, "unknown");
    free(big);
}

static void detect_rejects_missing_arguments(void **state)
{
    imgstore_file_info info;

    (void)state;
    assert_int_equal(imgstore_store__detect(&info, "x", 0, NULL, NULL), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_store__detect(NULL, "x", 0, mem_read_at, NULL), IMGSTORE_EINVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(detect_bzimage_reads_protocol_and_version),
        cmocka_unit_test(detect_refuses_truncated_bzimage),
        cmocka_unit_test(detect_pe_efi_application_and_other_pe),
        cmocka_unit_test(detect_refuses_truncated_pe),
        cmocka_unit_test(detect_iso9660_reads_volume_and_el_torito),
        cmocka_unit_test(detect_qcow2_reads_virtual_size),
        cmocka_unit_test(detect_vhd_fixed_and_dynamic),
        cmocka_unit_test(detect_vhdx_reads_virtual_size_from_metadata),
        cmocka_unit_test(detect_vmdk_sparse_and_descriptor),
        cmocka_unit_test(detect_raw_disks_by_partition_table),
        cmocka_unit_test(detect_tar_plain_and_gzipped),
        cmocka_unit_test(detect_gzip_contents),
        cmocka_unit_test(detect_initrds_by_magic),
        cmocka_unit_test(detect_cmdline_trims_trailing_newlines),
        cmocka_unit_test(detect_xl_config_by_name_or_kernel_line),
        cmocka_unit_test(detect_text_limits),
        cmocka_unit_test(detect_rejects_missing_arguments),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
