/*
 * Boot images that firmware or a boot loader runs directly: x86 Linux boot protocol images
 * (bzImage kernels, and other programs that speak the protocol such as iPXE's .lkrn and
 * memtest86+) and PE/COFF images, of which EFI applications are the interesting ones. Both are
 * checked for truncation against the sizes their headers declare. This file knows the header
 * layouts only; it does not verify Authenticode signatures or decompress kernels.
 */
#include "store/detect_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* Linux boot protocol, from Linux's Documentation/arch/x86/boot.rst ("The real-mode kernel
 * header"). Offsets are from the start of the file. */
#define BOOT_SETUP_SECTS     0x1F1 /* u8: 512-byte setup sectors after the boot sector; 0 = 4 */
#define BOOT_SYSSIZE         0x1F4 /* u32 (u16 before protocol 2.04): 16-byte paragraphs */
#define BOOT_FLAG            0x1FE /* u16 0xAA55 */
#define BOOT_HEADER_MAGIC    0x202 /* "HdrS" */
#define BOOT_VERSION         0x206 /* u16 protocol version, 0x020F = 2.15 */
#define BOOT_KERNEL_VERSION  0x20E /* u16: version string at this + 0x200, if non-zero */
#define BOOT_HEADER_END      0x210
#define KERNEL_VERSION_MAX   128
#define SYSSIZE_U32_PROTOCOL 0x0204

/* PE/COFF, from the Microsoft PE format specification. */
#define PE_LFANEW_OFFSET     0x3C /* u32 in the MS-DOS header */
#define PE_COFF_HEADER_SIZE  24   /* "PE\0\0" + COFF file header */
#define PE_SECTION_SIZE      40
#define PE_OPT_SUBSYSTEM     68 /* same offset in PE32 and PE32+ optional headers */
#define PE32_MAGIC           0x10B
#define PE32PLUS_MAGIC       0x20B
#define PE_CERT_TABLE_INDEX  4  /* IMAGE_DIRECTORY_ENTRY_SECURITY: a file offset, not an RVA */
#define PE_SUBSYSTEM_EFI_MIN 10 /* EFI application */
#define PE_SUBSYSTEM_EFI_MAX 13 /* EFI ROM */

static const uint8_t boot_sector_flag[2] = {0x55, 0xAA};
static const uint8_t pe_signature[4] = {'P', 'E', 0, 0};

/* ---- Linux boot protocol ------------------------------------------------------------- */

/*
 * The kernel_version string: printable, NUL-terminated, under 128 bytes. Anything else is left
 * unset rather than rejected: the pointer is advisory, and older images leave it dangling.
 */
static int read_kernel_version(const imgstore_store__detect_ctx *ctx, uint16_t protocol)
{
    uint16_t pointer = imgstore_store__le16(ctx->head + BOOT_KERNEL_VERSION);
    uint8_t buf[KERNEL_VERSION_MAX];
    uint64_t offset = (uint64_t)pointer + 0x200;
    size_t len;
    int err;

    if (protocol < 0x0200 || pointer == 0 || offset >= ctx->size)
        return 0;
    len = ctx->size - offset < sizeof(buf) ? (size_t)(ctx->size - offset) : sizeof(buf);
    if ((err = imgstore_store__detect_read(ctx, buf, len, offset)) < 0)
        return err;
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\0') {
            if (i > 0)
                memcpy(ctx->info->kernel_version, buf, i + 1);
            return 0;
        }
        if (buf[i] < 0x20 || buf[i] > 0x7E)
            return 0;
    }
    return 0;
}

/* An image that is also a PE file carries an EFI stub (or is an EFI application itself). */
static bool has_pe_header(const imgstore_store__detect_ctx *ctx)
{
    uint32_t lfanew;

    if (!imgstore_store__detect_head_has(ctx, 0, "MZ", 2) || ctx->head_len < PE_LFANEW_OFFSET + 4)
        return false;
    lfanew = imgstore_store__le32(ctx->head + PE_LFANEW_OFFSET);
    return imgstore_store__detect_head_has(ctx, lfanew, pe_signature, sizeof(pe_signature));
}

int imgstore_store__detect_bzimage(imgstore_store__detect_ctx *ctx)
{
    imgstore_file_info *info = ctx->info;
    const uint8_t *h = ctx->head;
    uint64_t setup_end, kernel_end;
    uint32_t syssize;
    uint16_t protocol;
    unsigned setup_sects;

    if (ctx->head_len < BOOT_HEADER_END ||
        !imgstore_store__detect_head_has(ctx, BOOT_FLAG, boot_sector_flag, 2) ||
        !imgstore_store__detect_head_has(ctx, BOOT_HEADER_MAGIC, "HdrS", 4))
        return 0;
    ctx->matched = true;
    setup_sects = h[BOOT_SETUP_SECTS] ? h[BOOT_SETUP_SECTS] : 4;
    setup_end = ((uint64_t)setup_sects + 1) * 512;
    if (setup_end > ctx->size)
        return imgstore_store__detect_malformed(ctx,
                                                "truncated bzImage: the setup code ends at byte "
                                                "%" PRIu64 " but the file has %" PRIu64 " bytes",
                                                setup_end, ctx->size);
    protocol = imgstore_store__le16(h + BOOT_VERSION);
    syssize = protocol >= SYSSIZE_U32_PROTOCOL ? imgstore_store__le32(h + BOOT_SYSSIZE)
                                               : imgstore_store__le16(h + BOOT_SYSSIZE);
    /*
     * syssize counts whole paragraphs, so builders round the payload up to 16 bytes (iPXE and
     * memtest86+ end up to 15 bytes short of it); anything shorter than that is cut off.
     */
    kernel_end = setup_end + (uint64_t)syssize * 16;
    if (kernel_end > ctx->size && kernel_end - ctx->size > 15)
        return imgstore_store__detect_malformed(ctx,
                                                "truncated bzImage: the kernel ends at byte "
                                                "%" PRIu64 " but the file has %" PRIu64 " bytes",
                                                kernel_end, ctx->size);
    imgstore_store__detect_set(info->kind, sizeof(info->kind), "kernel");
    imgstore_store__detect_set(info->format, sizeof(info->format), "bzimage");
    imgstore_store__detect_set(info->arch, sizeof(info->arch), "x86");
    snprintf(info->boot_protocol, sizeof(info->boot_protocol), "%u.%02u", protocol >> 8,
             protocol & 0xFFu);
    info->efi = has_pe_header(ctx);
    return read_kernel_version(ctx, protocol);
}

/* ---- PE/COFF ------------------------------------------------------------------------- */

static const char *pe_arch(uint16_t machine)
{
    switch (machine) {
    case 0x014C:
        return "i386";
    case 0x01C2:
    case 0x01C4:
        return "arm";
    case 0x5032:
        return "riscv32";
    case 0x5064:
        return "riscv64";
    case 0x6264:
        return "loongarch64";
    case 0x8664:
        return "x86_64";
    case 0xAA64:
        return "aarch64";
    default:
        return "";
    }
}

static int check_pe_extent(const imgstore_store__detect_ctx *ctx, const char *what, uint64_t offset,
                           uint64_t len)
{
    /* Both are at most 32-bit values here, so the sum cannot overflow. */
    if (offset + len > ctx->size)
        return imgstore_store__detect_malformed(
            ctx, "truncated PE: %s at byte %" PRIu64 " but the file has %" PRIu64 " bytes", what,
            offset + len, ctx->size);
    return 0;
}

static int check_sections(const imgstore_store__detect_ctx *ctx, uint64_t table, uint16_t count)
{
    uint8_t section[PE_SECTION_SIZE];
    char what[64];
    int err;

    if ((err = check_pe_extent(ctx, "the section table ends", table,
                               (uint64_t)count * PE_SECTION_SIZE)) < 0)
        return err;
    for (unsigned i = 0; i < count; i++) {
        uint32_t raw_size, raw_offset;

        if ((err = imgstore_store__detect_read(ctx, section, sizeof(section),
                                               table + (uint64_t)i * PE_SECTION_SIZE)) < 0)
            return err;
        raw_size = imgstore_store__le32(section + 16);
        raw_offset = imgstore_store__le32(section + 20);
        snprintf(what, sizeof(what), "section %u ends", i);
        if (raw_size > 0 && (err = check_pe_extent(ctx, what, raw_offset, raw_size)) < 0)
            return err;
    }
    return 0;
}

/* A signed image keeps its certificates after the sections; cutting them off breaks Secure Boot. */
static int check_certificates(const imgstore_store__detect_ctx *ctx, const uint8_t *opt,
                              size_t opt_len, uint16_t magic)
{
    size_t count_at = magic == PE32PLUS_MAGIC ? 108 : 92;
    size_t entry_at = count_at + 4 + PE_CERT_TABLE_INDEX * 8;
    uint32_t offset, len;

    if (opt_len < entry_at + 8 || imgstore_store__le32(opt + count_at) <= PE_CERT_TABLE_INDEX)
        return 0;
    offset = imgstore_store__le32(opt + entry_at);
    len = imgstore_store__le32(opt + entry_at + 4);
    if (len == 0)
        return 0;
    return check_pe_extent(ctx, "the certificate table ends", offset, len);
}

int imgstore_store__detect_pe(imgstore_store__detect_ctx *ctx)
{
    imgstore_file_info *info = ctx->info;
    uint8_t coff[PE_COFF_HEADER_SIZE];
    uint8_t opt[256];
    uint64_t lfanew, opt_offset;
    uint16_t machine, sections, opt_size, magic = 0, subsystem = 0;
    size_t opt_len;
    int err;

    if (!imgstore_store__detect_head_has(ctx, 0, "MZ", 2) || ctx->head_len < PE_LFANEW_OFFSET + 4)
        return 0;
    lfanew = imgstore_store__le32(ctx->head + PE_LFANEW_OFFSET);
    /* Without a PE header this is an MS-DOS program or a file that happens to start with MZ. */
    if (!imgstore_store__detect_in_file(ctx, lfanew, sizeof(coff)))
        return 0;
    if ((err = imgstore_store__detect_read(ctx, coff, sizeof(coff), lfanew)) < 0)
        return err;
    if (memcmp(coff, pe_signature, sizeof(pe_signature)) != 0)
        return 0;
    ctx->matched = true;
    machine = imgstore_store__le16(coff + 4);
    sections = imgstore_store__le16(coff + 6);
    opt_size = imgstore_store__le16(coff + 20);
    opt_offset = lfanew + sizeof(coff);
    if ((err = check_pe_extent(ctx, "the optional header ends", opt_offset, opt_size)) < 0)
        return err;
    opt_len = opt_size < sizeof(opt) ? opt_size : sizeof(opt);
    if ((err = imgstore_store__detect_read(ctx, opt, opt_len, opt_offset)) < 0)
        return err;
    if (opt_len >= PE_OPT_SUBSYSTEM + 2) {
        magic = imgstore_store__le16(opt);
        subsystem = imgstore_store__le16(opt + PE_OPT_SUBSYSTEM);
    }
    if ((err = check_sections(ctx, opt_offset + opt_size, sections)) < 0)
        return err;
    if ((magic == PE32_MAGIC || magic == PE32PLUS_MAGIC) &&
        (err = check_certificates(ctx, opt, opt_len, magic)) < 0)
        return err;
    imgstore_store__detect_set(info->arch, sizeof(info->arch), pe_arch(machine));
    if ((magic == PE32_MAGIC || magic == PE32PLUS_MAGIC) && subsystem >= PE_SUBSYSTEM_EFI_MIN &&
        subsystem <= PE_SUBSYSTEM_EFI_MAX) {
        imgstore_store__detect_set(info->kind, sizeof(info->kind), "efi");
        imgstore_store__detect_set(info->format, sizeof(info->format), "pe-efi");
    } else {
        imgstore_store__detect_set(info->kind, sizeof(info->kind), "unknown");
        imgstore_store__detect_set(info->format, sizeof(info->format), "pe");
    }
    return 0;
}
