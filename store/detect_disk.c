/*
 * Disks that are bytes as the machine sees them: ISO 9660 images (plain or hybrid, that is also
 * bootable as a disk through an MBR or GPT) and raw disk images with an MBR or GPT partition
 * table. An ISO is checked against the volume size its primary volume descriptor declares;
 * whether it or a disk boots on EFI is best effort and never fails detection. Virtual disk
 * containers (qcow2, VHD, VHDX, VMDK) are in detect_vdisk.c. Nothing here reads file systems.
 */
#include "store/detect_internal.h"

#include <inttypes.h>
#include <string.h>

/* MBR: four 16-byte partition entries at 446, boot signature at 510. */
#define MBR_ENTRIES          446
#define MBR_ENTRY_SIZE       16
#define MBR_SIGNATURE        510
#define MBR_TYPE_GPT_PROTECT 0xEE
#define MBR_TYPE_EFI_SYSTEM  0xEF

/* GPT header (UEFI specification, "GUID Partition Table Disk Layout") in LBA 1. */
#define GPT_HEADER_SIZE     92
#define GPT_ENTRIES_LBA     72 /* u64 */
#define GPT_ENTRY_COUNT     80 /* u32 */
#define GPT_ENTRY_SIZE      84 /* u32 */
#define GPT_ENTRY_MIN       128
#define GPT_ENTRY_MAX       4096
#define GPT_ENTRY_COUNT_MAX 1024

/* ISO 9660 (ECMA-119) and El Torito. */
#define ISO_SECTOR             2048
#define ISO_DESCRIPTORS_FIRST  16 /* the system area fills sectors 0-15 */
#define ISO_DESCRIPTORS_MAX    32
#define ISO_VD_BOOT_RECORD     0
#define ISO_VD_PRIMARY         1
#define ISO_VD_TERMINATOR      255
#define ISO_PVD_VOLUME_ID      40   /* 32 bytes, space padded */
#define ISO_PVD_VOLUME_SIZE    80   /* u32 LE (both-endian field): logical blocks */
#define ISO_PVD_BLOCK_SIZE     128  /* u16 LE (both-endian field) */
#define ISO_BOOT_CATALOG_LBA   0x47 /* u32 LE in the El Torito boot record */
#define ELTORITO_ENTRY_SIZE    32
#define ELTORITO_VALIDATION_ID 0x01
#define ELTORITO_SECTION       0x90
#define ELTORITO_SECTION_LAST  0x91
#define ELTORITO_PLATFORM_EFI  0xEF
#define ELTORITO_SECTOR_COUNT  6 /* u16 LE in a boot entry: 512-byte sectors to load */
#define ELTORITO_LOAD_RBA      8 /* u32 LE in a boot entry: its first 2048-byte sector */

static const uint8_t gpt_signature[8] = {'E', 'F', 'I', ' ', 'P', 'A', 'R', 'T'};
/* EFI System Partition type C12A7328-F81F-11D2-BA4B-00A0C93EC93B as stored (mixed endian). */
static const uint8_t gpt_esp_type[16] = {0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11,
                                         0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B};
static const uint8_t mbr_flag[2] = {0x55, 0xAA};
static const char eltorito_id[] = "EL TORITO SPECIFICATION";

/* ---- partition tables --------------------------------------------------------------- */

/*
 * A boot signature alone is not a partition table (FAT boot sectors and boot loaders have one),
 * so every entry must have a valid status byte and at least one must be in use.
 */
bool imgstore_store__detect_mbr_valid(const imgstore_store__detect_ctx *ctx, bool *esp_out,
                                      bool *protective_out)
{
    bool used = false;

    *esp_out = false;
    *protective_out = false;
    if (!imgstore_store__detect_head_has(ctx, MBR_SIGNATURE, mbr_flag, sizeof(mbr_flag)))
        return false;
    for (int i = 0; i < 4; i++) {
        const uint8_t *entry = ctx->head + MBR_ENTRIES + i * MBR_ENTRY_SIZE;

        if (entry[0] != 0x00 && entry[0] != 0x80)
            return false;
        if (entry[4] == 0)
            continue;
        if (imgstore_store__le32(entry + 12) == 0)
            return false;
        used = true;
        *esp_out = *esp_out || entry[4] == MBR_TYPE_EFI_SYSTEM;
        *protective_out = *protective_out || entry[4] == MBR_TYPE_GPT_PROTECT;
    }
    return used;
}

/* An EFI system partition in the MBR must lie inside the file too. */
static int mbr_esp_in_file(const imgstore_store__detect_ctx *ctx, const char *what)
{
    for (int i = 0; i < 4; i++) {
        const uint8_t *entry = ctx->head + MBR_ENTRIES + i * MBR_ENTRY_SIZE;
        uint64_t end =
            ((uint64_t)imgstore_store__le32(entry + 8) + imgstore_store__le32(entry + 12)) * 512;

        if (entry[4] == MBR_TYPE_EFI_SYSTEM && end > ctx->size)
            return imgstore_store__detect_malformed(ctx,
                                                    "truncated %s: the EFI system partition ends "
                                                    "at byte %" PRIu64 " but the file has %" PRIu64
                                                    " bytes",
                                                    what, end, ctx->size);
    }
    return 0;
}

/* The GPT header sits in LBA 1: byte 512, or 4096 on 4Kn disks. Returns the sector size or 0. */
static uint64_t gpt_sector_size(const imgstore_store__detect_ctx *ctx)
{
    if (imgstore_store__detect_head_has(ctx, 512, gpt_signature, sizeof(gpt_signature)))
        return 512;
    if (imgstore_store__detect_head_has(ctx, 4096, gpt_signature, sizeof(gpt_signature)))
        return 4096;
    return 0;
}

/* Best effort: a partition array out of range or oddly sized just means "no ESP seen". */
int imgstore_store__detect_gpt_has_esp(const imgstore_store__detect_ctx *ctx, bool *out)
{
    uint64_t sector = gpt_sector_size(ctx);
    uint8_t header[GPT_HEADER_SIZE];
    uint8_t type[sizeof(gpt_esp_type)];
    uint64_t lba, array;
    uint32_t count, entry_size;
    int err;

    *out = false;
    if (sector == 0 || !imgstore_store__detect_in_file(ctx, sector, sizeof(header)))
        return 0;
    if ((err = imgstore_store__detect_read(ctx, header, sizeof(header), sector)) < 0)
        return err;
    lba = imgstore_store__le64(header + GPT_ENTRIES_LBA);
    count = imgstore_store__le32(header + GPT_ENTRY_COUNT);
    entry_size = imgstore_store__le32(header + GPT_ENTRY_SIZE);
    if (entry_size < GPT_ENTRY_MIN || entry_size > GPT_ENTRY_MAX || count > GPT_ENTRY_COUNT_MAX ||
        lba > UINT64_MAX / sector)
        return 0;
    array = lba * sector;
    for (uint32_t i = 0; i < count; i++) {
        uint64_t at = (uint64_t)i * entry_size;

        if (array > UINT64_MAX - at || !imgstore_store__detect_in_file(ctx, array + at, 16))
            return 0;
        if ((err = imgstore_store__detect_read(ctx, type, sizeof(type), array + at)) < 0)
            return err;
        if (memcmp(type, gpt_esp_type, sizeof(type)) == 0) {
            uint8_t range[16]; /* first and last LBA, inclusive */
            uint64_t last;

            *out = true;
            if (!imgstore_store__detect_in_file(ctx, array + at + 32, sizeof(range)))
                return 0;
            if ((err = imgstore_store__detect_read(ctx, range, sizeof(range), array + at + 32)) < 0)
                return err;
            last = imgstore_store__le64(range + 8);
            if (last >= UINT64_MAX / sector || (last + 1) * sector > ctx->size)
                return imgstore_store__detect_malformed(
                    ctx,
                    "truncated GPT disk: the EFI system partition ends at byte %" PRIu64
                    " but the file has %" PRIu64 " bytes",
                    last >= UINT64_MAX / sector ? UINT64_MAX : (last + 1) * sector, ctx->size);
            return 0;
        }
    }
    return 0;
}

int imgstore_store__detect_partitioned(imgstore_store__detect_ctx *ctx)
{
    imgstore_file_info *info = ctx->info;
    bool esp = false, protective = false;
    int err;

    if (gpt_sector_size(ctx) != 0) {
        if ((err = imgstore_store__detect_gpt_has_esp(ctx, &esp)) < 0)
            return err;
        imgstore_store__detect_set(info->partition_table, sizeof(info->partition_table), "gpt");
    } else if (imgstore_store__detect_mbr_valid(ctx, &esp, &protective)) {
        if (esp && (err = mbr_esp_in_file(ctx, "disk image")) < 0)
            return err;
        /* A protective MBR with no GPT header where we look is still a GPT disk. */
        imgstore_store__detect_set(info->partition_table, sizeof(info->partition_table),
                                   protective ? "gpt" : "mbr");
    } else {
        return 0;
    }
    ctx->matched = true;
    imgstore_store__detect_set(info->kind, sizeof(info->kind), "disk");
    imgstore_store__detect_set(info->format, sizeof(info->format), "raw");
    info->efi = esp;
    return 0;
}

/* ---- ISO 9660 ------------------------------------------------------------------------ */

/* The EFI boot image an El Torito entry loads must lie inside the file, as the volume must
 * (issue #10: a hybrid ISO cut inside it was stored as EFI-bootable). Its sector count is in
 * 512-byte sectors; 0 and 1 say only "at least one". */
static int boot_image_in_file(const imgstore_store__detect_ctx *ctx, const uint8_t *entry)
{
    uint64_t count = imgstore_store__le16(entry + ELTORITO_SECTOR_COUNT);
    uint64_t end = (uint64_t)imgstore_store__le32(entry + ELTORITO_LOAD_RBA) * ISO_SECTOR +
                   (count > 1 ? count : 1) * 512;

    if (end > ctx->size)
        return imgstore_store__detect_malformed(ctx,
                                                "truncated hybrid ISO: the EFI boot image ends at "
                                                "byte %" PRIu64 " but the file has %" PRIu64
                                                " bytes",
                                                end, ctx->size);
    return 0;
}

/* An El Torito catalog entry for the EFI platform means the image boots on UEFI firmware. */
static int boot_catalog_has_efi(const imgstore_store__detect_ctx *ctx, uint32_t lba, bool *out)
{
    uint8_t catalog[ISO_SECTOR];
    uint64_t offset = (uint64_t)lba * ISO_SECTOR;
    size_t len;
    int err;

    *out = false;
    if (offset >= ctx->size)
        return 0;
    len = ctx->size - offset < sizeof(catalog) ? (size_t)(ctx->size - offset) : sizeof(catalog);
    if ((err = imgstore_store__detect_read(ctx, catalog, len, offset)) < 0)
        return err;
    if (len < ELTORITO_ENTRY_SIZE || catalog[0] != ELTORITO_VALIDATION_ID)
        return 0;
    *out = catalog[1] == ELTORITO_PLATFORM_EFI;
    if (*out && 2 * ELTORITO_ENTRY_SIZE <= len)
        return boot_image_in_file(ctx, catalog + ELTORITO_ENTRY_SIZE);
    /* Entry 1 is the default entry; section headers (with a platform id) follow, each with
     * its boot entry after it. */
    for (size_t at = 2 * ELTORITO_ENTRY_SIZE; at + ELTORITO_ENTRY_SIZE <= len;
         at += ELTORITO_ENTRY_SIZE) {
        if ((catalog[at] == ELTORITO_SECTION || catalog[at] == ELTORITO_SECTION_LAST) &&
            catalog[at + 1] == ELTORITO_PLATFORM_EFI) {
            *out = true;
            return at + 2 * ELTORITO_ENTRY_SIZE <= len
                       ? boot_image_in_file(ctx, catalog + at + ELTORITO_ENTRY_SIZE)
                       : 0;
        }
    }
    return 0;
}

static void set_volume_id(imgstore_file_info *info, const uint8_t *field)
{
    size_t len = 32;

    while (len > 0 && (field[len - 1] == ' ' || field[len - 1] == '\0'))
        len--;
    for (size_t i = 0; i < len; i++) {
        if (field[i] < 0x20 || field[i] > 0x7E)
            return;
    }
    memcpy(info->volume_id, field, len);
    info->volume_id[len] = '\0';
}

int imgstore_store__detect_iso9660(imgstore_store__detect_ctx *ctx)
{
    imgstore_file_info *info = ctx->info;
    uint8_t desc[ISO_PVD_BLOCK_SIZE + 2];
    uint8_t pvd[sizeof(desc)];
    bool have_pvd = false, have_catalog = false, esp = false, protective = false;
    uint32_t catalog_lba = 0, volume_blocks;
    uint16_t block_size;
    uint64_t volume_end;
    int err;

    if (!imgstore_store__detect_head_has(ctx, ISO_DESCRIPTORS_FIRST * ISO_SECTOR + 1, "CD001", 5))
        return 0;
    ctx->matched = true;
    for (unsigned i = ISO_DESCRIPTORS_FIRST; i < ISO_DESCRIPTORS_FIRST + ISO_DESCRIPTORS_MAX; i++) {
        uint64_t offset = (uint64_t)i * ISO_SECTOR;

        /* Descriptors past the primary one are optional to us; the volume size check below
         * reports a cut-off image. */
        if (!imgstore_store__detect_in_file(ctx, offset, ISO_SECTOR)) {
            if (have_pvd)
                break;
            return imgstore_store__detect_malformed(
                ctx,
                "truncated ISO 9660: volume descriptor %u ends at byte %" PRIu64
                " but the file has %" PRIu64 " bytes",
                i, offset + ISO_SECTOR, ctx->size);
        }
        if ((err = imgstore_store__detect_read(ctx, desc, sizeof(desc), offset)) < 0)
            return err;
        if (memcmp(desc + 1, "CD001", 5) != 0 || desc[0] == ISO_VD_TERMINATOR)
            break;
        if (desc[0] == ISO_VD_PRIMARY && !have_pvd) {
            memcpy(pvd, desc, sizeof(pvd));
            have_pvd = true;
        } else if (desc[0] == ISO_VD_BOOT_RECORD &&
                   memcmp(desc + 7, eltorito_id, sizeof(eltorito_id) - 1) == 0) {
            catalog_lba = imgstore_store__le32(desc + ISO_BOOT_CATALOG_LBA);
            have_catalog = true;
        }
    }
    if (!have_pvd)
        return imgstore_store__detect_malformed(ctx, "bad ISO 9660: no primary volume descriptor");
    volume_blocks = imgstore_store__le32(pvd + ISO_PVD_VOLUME_SIZE);
    block_size = imgstore_store__le16(pvd + ISO_PVD_BLOCK_SIZE);
    if (block_size == 0 || (block_size & (block_size - 1)) != 0)
        return imgstore_store__detect_malformed(ctx, "bad ISO 9660: logical block size %u",
                                                block_size);
    volume_end = (uint64_t)volume_blocks * block_size;
    if (volume_end > ctx->size)
        return imgstore_store__detect_malformed(ctx,
                                                "truncated ISO 9660: the volume ends at byte "
                                                "%" PRIu64 " but the file has %" PRIu64 " bytes",
                                                volume_end, ctx->size);
    imgstore_store__detect_set(info->kind, sizeof(info->kind), "disk");
    imgstore_store__detect_set(info->format, sizeof(info->format), "iso9660");
    set_volume_id(info, pvd + ISO_PVD_VOLUME_ID);
    if (have_catalog && (err = boot_catalog_has_efi(ctx, catalog_lba, &info->efi)) < 0)
        return err;
    if (gpt_sector_size(ctx) != 0) {
        info->hybrid = true;
        if ((err = imgstore_store__detect_gpt_has_esp(ctx, &esp)) < 0)
            return err;
    } else if (imgstore_store__detect_mbr_valid(ctx, &esp, &protective)) {
        info->hybrid = true;
        if (esp && (err = mbr_esp_in_file(ctx, "hybrid ISO")) < 0)
            return err;
    }
    info->efi = info->efi || esp;
    return 0;
}
