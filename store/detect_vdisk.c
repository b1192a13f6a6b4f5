/*
 * Virtual disk containers: qcow2 (and its predecessor qcow), VHD (fixed and dynamic), VHDX and
 * VMDK (sparse extents and text descriptors). Each reports the guest-visible disk size and is
 * checked for the truncation its headers make visible: tables that point past the end of the
 * file, a dynamic VHD missing its trailing footer, a fixed VHD shorter than its disk. This file
 * does not walk allocation tables, follow backing files or check checksums.
 */
#include "store/detect_internal.h"

#include <inttypes.h>
#include <string.h>

/* qcow and qcow2 (QEMU's docs/interop/qcow2.txt): big-endian header fields. */
#define QCOW1_HEADER_SIZE       48
#define QCOW2_HEADER_SIZE       72
#define QCOW_SIZE               24 /* u64 guest-visible bytes, in both versions */
#define QCOW2_CLUSTER_BITS      20 /* u32 */
#define QCOW2_L1_SIZE           36 /* u32 entries of 8 bytes */
#define QCOW2_L1_OFFSET         40 /* u64 */
#define QCOW2_REFCOUNT_TABLE    48 /* u64 */
#define QCOW2_REFCOUNT_CLUSTERS 56 /* u32 */

/* VHD (Microsoft "Virtual Hard Disk Image Format Specification"): a big-endian footer. */
#define VHD_FOOTER_SIZE  512
#define VHD_CURRENT_SIZE 48 /* u64 */
#define VHD_DISK_TYPE    60 /* u32 */
#define VHD_TYPE_FIXED   2

/* VHDX (Microsoft [MS-VHDX]): little-endian structures in a 1 MiB header section. */
#define VHDX_REGION_TABLE         (192u * 1024)
#define VHDX_REGION_TABLE_SIZE    (64u * 1024)
#define VHDX_TABLE_HEADER_SIZE    16
#define VHDX_TABLE_ENTRY_SIZE     32
#define VHDX_TABLE_ENTRIES_MAX    2047
#define VHDX_METADATA_HEADER_SIZE 32

/* VMDK (VMware "Virtual Disk Format 1.1"): a little-endian sparse extent header. */
#define VMDK_HEADER_SIZE 512
#define VMDK_CAPACITY    12 /* u64 sectors */
#define VMDK_SECTOR      512

static const uint8_t qcow_magic[4] = {'Q', 'F', 'I', 0xFB};
static const char vhd_cookie[] = "conectix";
static const char vmdk_descriptor[] = "# Disk DescriptorFile";
/* Region and metadata item GUIDs as stored (first three fields little-endian). */
static const uint8_t vhdx_metadata_region[16] = {0x06, 0xA2, 0x7C, 0x8B, 0x90, 0x47, 0x9A, 0x4B,
                                                 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F, 0x88, 0x6E};
static const uint8_t vhdx_virtual_disk_size[16] = {0x24, 0x42, 0xA5, 0x2F, 0x1B, 0xCD, 0x76, 0x48,
                                                   0xB2, 0x11, 0x5D, 0xBE, 0xD8, 0x3B, 0xF4, 0xB8};

/* The manifest stores integers up to 2^53, the largest every JSON parser keeps exact (8 PiB). */
#define VIRTUAL_SIZE_MAX (1ull << 53)

static int set_disk(const imgstore_store__detect_ctx *ctx, const char *format,
                    uint64_t virtual_size)
{
    imgstore_file_info *info = ctx->info;

    if (virtual_size > VIRTUAL_SIZE_MAX)
        return imgstore_store__detect_malformed(
            ctx, "bad %s: a virtual size of %" PRIu64 " bytes is beyond 2^53", format,
            virtual_size);
    imgstore_store__detect_set(info->kind, sizeof(info->kind), "disk");
    imgstore_store__detect_set(info->format, sizeof(info->format), format);
    info->virtual_size = virtual_size;
    return 0;
}

/* ---- qcow2 -------------------------------------------------------------------------- */

static int check_qcow_table(const imgstore_store__detect_ctx *ctx, const char *what,
                            uint64_t offset, uint64_t len)
{
    if (len == 0)
        return 0;
    if (offset > UINT64_MAX - len)
        return imgstore_store__detect_malformed(
            ctx, "bad qcow2: the %s offset %" PRIu64 " is out of range", what, offset);
    if (offset + len > ctx->size)
        return imgstore_store__detect_malformed(ctx,
                                                "truncated qcow2: the %s ends at byte %" PRIu64
                                                " but the file has %" PRIu64 " bytes",
                                                what, offset + len, ctx->size);
    return 0;
}

static int detect_qcow(imgstore_store__detect_ctx *ctx)
{
    const uint8_t *h = ctx->head;
    uint32_t version, cluster_bits;
    size_t header_size;
    int err;

    if (!imgstore_store__detect_head_has(ctx, 0, qcow_magic, sizeof(qcow_magic)))
        return 0;
    ctx->matched = true;
    version = ctx->head_len >= 8 ? imgstore_store__be32(h + 4) : 0;
    header_size = version == 1 ? QCOW1_HEADER_SIZE : QCOW2_HEADER_SIZE;
    if (ctx->head_len < header_size)
        return imgstore_store__detect_malformed(ctx,
                                                "truncated qcow2: the header needs %zu bytes but "
                                                "the file has %" PRIu64 " bytes",
                                                header_size, ctx->size);
    if (version == 1) {
        return set_disk(ctx, "qcow", imgstore_store__be64(h + QCOW_SIZE));
    }
    if (version != 2 && version != 3)
        return imgstore_store__detect_malformed(ctx, "bad qcow2: unknown version %" PRIu32,
                                                version);
    cluster_bits = imgstore_store__be32(h + QCOW2_CLUSTER_BITS);
    /* QEMU accepts 512-byte to 2 MiB clusters. */
    if (cluster_bits < 9 || cluster_bits > 21)
        return imgstore_store__detect_malformed(ctx, "bad qcow2: cluster_bits %" PRIu32,
                                                cluster_bits);
    if ((err = check_qcow_table(ctx, "L1 table", imgstore_store__be64(h + QCOW2_L1_OFFSET),
                                (uint64_t)imgstore_store__be32(h + QCOW2_L1_SIZE) * 8)) < 0)
        return err;
    if ((err = check_qcow_table(
             ctx, "refcount table", imgstore_store__be64(h + QCOW2_REFCOUNT_TABLE),
             (uint64_t)imgstore_store__be32(h + QCOW2_REFCOUNT_CLUSTERS) << cluster_bits)) < 0)
        return err;
    return set_disk(ctx, "qcow2", imgstore_store__be64(h + QCOW_SIZE));
}

/* ---- VHD ---------------------------------------------------------------------------- */

/*
 * Every VHD ends in a footer; dynamic and differencing disks also keep a copy at byte 0, so a
 * copy at the start without one at the end is a cut-off file. Old Virtual PC wrote 511-byte
 * footers, hence the second place to look.
 */
static int detect_vhd(imgstore_store__detect_ctx *ctx)
{
    uint8_t tail[VHD_FOOTER_SIZE];
    const uint8_t *footer = NULL;
    uint64_t footer_size = VHD_FOOTER_SIZE, current_size;
    bool at_start = imgstore_store__detect_head_has(ctx, 0, vhd_cookie, 8);
    int err;

    if (ctx->size >= sizeof(tail)) {
        if ((err = imgstore_store__detect_read(ctx, tail, sizeof(tail), ctx->size - sizeof(tail))) <
            0)
            return err;
        if (memcmp(tail, vhd_cookie, 8) == 0) {
            footer = tail;
        } else if (memcmp(tail + 1, vhd_cookie, 8) == 0) {
            footer = tail + 1;
            footer_size = VHD_FOOTER_SIZE - 1;
        }
    }
    if (!at_start && !footer)
        return 0;
    ctx->matched = true;
    if (!footer)
        return imgstore_store__detect_malformed(ctx, "truncated VHD: the file starts with a VHD "
                                                     "footer copy but does not end with the "
                                                     "footer");
    current_size = imgstore_store__be64(footer + VHD_CURRENT_SIZE);
    if (imgstore_store__be32(footer + VHD_DISK_TYPE) == VHD_TYPE_FIXED &&
        current_size > ctx->size - footer_size)
        return imgstore_store__detect_malformed(ctx,
                                                "truncated VHD: the fixed disk is %" PRIu64
                                                " bytes but the file holds %" PRIu64
                                                " before its footer",
                                                current_size, ctx->size - footer_size);
    return set_disk(ctx, "vhd", current_size);
}

/* ---- VHDX --------------------------------------------------------------------------- */

/* Find the 32-byte table entry whose GUID is `guid`; *found_out says whether there was one. */
static int find_entry(const imgstore_store__detect_ctx *ctx, uint64_t first, uint32_t count,
                      const uint8_t *guid, uint8_t *entry, bool *found_out)
{
    int err;

    *found_out = false;
    for (uint32_t i = 0; i < count; i++) {
        if ((err = imgstore_store__detect_read(ctx, entry, VHDX_TABLE_ENTRY_SIZE,
                                               first + (uint64_t)i * VHDX_TABLE_ENTRY_SIZE)) < 0)
            return err;
        if (memcmp(entry, guid, 16) == 0) {
            *found_out = true;
            return 0;
        }
    }
    return 0;
}

static int detect_vhdx(imgstore_store__detect_ctx *ctx)
{
    uint8_t header[VHDX_METADATA_HEADER_SIZE];
    uint8_t entry[VHDX_TABLE_ENTRY_SIZE];
    uint8_t value[8];
    uint64_t meta_offset;
    uint32_t count, meta_len, item_offset, item_len;
    bool found;
    int err;

    if (!imgstore_store__detect_head_has(ctx, 0, "vhdxfile", 8))
        return 0;
    ctx->matched = true;
    if (!imgstore_store__detect_in_file(ctx, VHDX_REGION_TABLE, VHDX_REGION_TABLE_SIZE))
        return imgstore_store__detect_malformed(
            ctx,
            "truncated VHDX: the region table ends at byte %u but the file has %" PRIu64 " bytes",
            VHDX_REGION_TABLE + VHDX_REGION_TABLE_SIZE, ctx->size);
    if ((err = imgstore_store__detect_read(ctx, header, VHDX_TABLE_HEADER_SIZE,
                                           VHDX_REGION_TABLE)) < 0)
        return err;
    count = imgstore_store__le32(header + 8);
    if (memcmp(header, "regi", 4) != 0 || count > VHDX_TABLE_ENTRIES_MAX)
        return imgstore_store__detect_malformed(ctx, "bad VHDX: no region table at byte %u",
                                                VHDX_REGION_TABLE);
    if ((err = find_entry(ctx, VHDX_REGION_TABLE + VHDX_TABLE_HEADER_SIZE, count,
                          vhdx_metadata_region, entry, &found)) < 0)
        return err;
    if (!found)
        return imgstore_store__detect_malformed(ctx, "bad VHDX: no metadata region");
    meta_offset = imgstore_store__le64(entry + 16);
    meta_len = imgstore_store__le32(entry + 24);
    if (meta_len < VHDX_METADATA_HEADER_SIZE ||
        !imgstore_store__detect_in_file(ctx, meta_offset, meta_len))
        return imgstore_store__detect_malformed(ctx,
                                                "truncated VHDX: the metadata region (%" PRIu32
                                                " bytes at byte %" PRIu64
                                                ") is not inside the file's %" PRIu64 " bytes",
                                                meta_len, meta_offset, ctx->size);
    if ((err = imgstore_store__detect_read(ctx, header, sizeof(header), meta_offset)) < 0)
        return err;
    count = imgstore_store__le16(header + 10);
    if (memcmp(header, "metadata", 8) != 0 ||
        (uint64_t)count * VHDX_TABLE_ENTRY_SIZE > meta_len - VHDX_METADATA_HEADER_SIZE)
        return imgstore_store__detect_malformed(
            ctx, "bad VHDX: bad metadata table at byte %" PRIu64, meta_offset);
    if ((err = find_entry(ctx, meta_offset + VHDX_METADATA_HEADER_SIZE, count,
                          vhdx_virtual_disk_size, entry, &found)) < 0)
        return err;
    if (!found)
        return imgstore_store__detect_malformed(ctx, "bad VHDX: no virtual disk size item");
    item_offset = imgstore_store__le32(entry + 16);
    item_len = imgstore_store__le32(entry + 20);
    if (item_len < sizeof(value) || item_offset > meta_len - sizeof(value))
        return imgstore_store__detect_malformed(
            ctx, "bad VHDX: the virtual disk size item lies outside the metadata region");
    if ((err = imgstore_store__detect_read(ctx, value, sizeof(value), meta_offset + item_offset)) <
        0)
        return err;
    return set_disk(ctx, "vhdx", imgstore_store__le64(value));
}

/* ---- VMDK --------------------------------------------------------------------------- */

/*
 * A descriptor lists its extents as `RW 4192256 SPARSE "disk-s001.vmdk"`: access, size in
 * sectors, type, file. The disk is their sum; an unparsable line leaves the size unknown.
 */
static uint64_t vmdk_descriptor_size(const char *text, size_t len)
{
    static const char *const access[] = {"RW ", "RDONLY ", "NOACCESS "};
    uint64_t sectors = 0;
    size_t at = 0;

    while (at < len) {
        const char *line = text + at;
        size_t line_len = 0;

        while (at + line_len < len && line[line_len] != '\n')
            line_len++;
        at += line_len + 1;
        for (size_t i = 0; i < sizeof(access) / sizeof(access[0]); i++) {
            size_t prefix = strlen(access[i]);
            uint64_t extent = 0;
            size_t p = prefix;

            if (line_len <= prefix || strncmp(line, access[i], prefix) != 0)
                continue;
            while (p < line_len && line[p] >= '0' && line[p] <= '9') {
                if (extent > (UINT64_MAX - 9) / 10)
                    return 0;
                extent = extent * 10 + (uint64_t)(line[p] - '0');
                p++;
            }
            if (extent > UINT64_MAX / VMDK_SECTOR - sectors)
                return 0;
            sectors += extent;
        }
    }
    return sectors * VMDK_SECTOR;
}

static int detect_vmdk(imgstore_store__detect_ctx *ctx)
{
    uint64_t capacity;

    if (imgstore_store__detect_head_has(ctx, 0, vmdk_descriptor, sizeof(vmdk_descriptor) - 1)) {
        ctx->matched = true;
        return set_disk(ctx, "vmdk", vmdk_descriptor_size((const char *)ctx->head, ctx->head_len));
    }
    if (!imgstore_store__detect_head_has(ctx, 0, "KDMV", 4))
        return 0;
    ctx->matched = true;
    if (ctx->head_len < VMDK_HEADER_SIZE)
        return imgstore_store__detect_malformed(ctx,
                                                "truncated VMDK: the header needs %d bytes but "
                                                "the file has %" PRIu64 " bytes",
                                                VMDK_HEADER_SIZE, ctx->size);
    capacity = imgstore_store__le64(ctx->head + VMDK_CAPACITY);
    if (capacity > UINT64_MAX / VMDK_SECTOR)
        return imgstore_store__detect_malformed(ctx, "bad VMDK: capacity of %" PRIu64 " sectors",
                                                capacity);
    return set_disk(ctx, "vmdk", capacity * VMDK_SECTOR);
}

int imgstore_store__detect_virtual_disk(imgstore_store__detect_ctx *ctx)
{
    int err;

    if ((err = detect_qcow(ctx)) < 0 || ctx->matched)
        return err;
    if ((err = detect_vhdx(ctx)) < 0 || ctx->matched)
        return err;
    if ((err = detect_vmdk(ctx)) < 0 || ctx->matched)
        return err;
    /* Last: it is the only one that reads the end of the file. */
    return detect_vhd(ctx);
}
