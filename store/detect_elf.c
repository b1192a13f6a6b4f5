/*
 * ELF detection: the architecture from the header, and what the ELF notes say the file is. Solo5
 * unikernels (MirageOS on hvt, spt, virtio, muen, genode, xen) carry a "Solo5" ABI note naming
 * their target and a manifest note listing their devices; Xen guests carry "Xen" notes saying
 * whether they boot PV, PVH or both. Any ELF is also checked for truncation (headers, segments
 * and notes past the end of the file), since a cut-off unikernel must not be stored as good.
 * Every offset comes from the file, so each sum is checked before it is made. This file does
 * not load or run anything, and does not look at symbols or debug information.
 */
#include "store/detect_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* System V gABI. */
#define EI_NIDENT   16
#define ELFCLASS32  1
#define ELFCLASS64  2
#define ELFDATA2LSB 1
#define ELFDATA2MSB 2
#define PT_LOAD     1
#define PT_NOTE     4
#define SHT_NOTE    7
#define SHT_NOBITS  8

#define ELF32_EHDR_SIZE 52
#define ELF64_EHDR_SIZE 64
#define ELF32_PHDR_SIZE 32
#define ELF64_PHDR_SIZE 56
#define ELF32_SHDR_SIZE 40
#define ELF64_SHDR_SIZE 64
#define ELF_NHDR_SIZE   12 /* n_namesz, n_descsz, n_type: 32-bit words on ELF64 too */

static const uint8_t elf_magic[4] = {0x7F, 'E', 'L', 'F'};

/*
 * Solo5's notes, from Solo5's include/solo5/elf_abi.h (ABI1_NOTE_*, struct abi1_info,
 * enum abi_target) and include/solo5/mft_abi.h (MFT1_NOTE_*, struct mft, struct mft_entry).
 */
#define SOLO5_NOTE_NAME          "Solo5"
#define SOLO5_ABI1_NOTE_TYPE     0x31494241u /* "ABI1" */
#define SOLO5_ABI1_INFO_SIZE     16          /* abi_target, abi_version, reserved0, reserved1 */
#define SOLO5_MFT1_NOTE_TYPE     0x3154464du /* "MFT1" */
#define SOLO5_MFT_VERSION        1           /* MFT_VERSION */
#define SOLO5_MFT_MAX_ENTRIES    64          /* MFT_MAX_ENTRIES */
#define SOLO5_MFT_RESERVED_FIRST (1u << 30)  /* MFT_RESERVED_FIRST: e[0], not a device */
/*
 * struct mft1_note puts its struct mft at offset 24: MFT1_NOTE_ALIGN is 8 on the LP64 targets
 * Solo5 supports, and the header plus "Solo5\0\0\0" is 20 bytes. n_descsz counts those 4 bytes
 * of padding, which Solo5's loader (elf_load_note) skips the same way.
 */
#define SOLO5_MFT1_PAD           4

static const char *const solo5_targets[] = {
    NULL, "hvt", "spt", "virtio", "muen", "genode", "xen", /* enum abi_target, from 1 */
};

/*
 * struct mft layouts as compiled on LP64 targets. The manifest version never changed, so the
 * layout is recognised by n_descsz matching `entries` exactly, as Solo5's mft_validate()
 * requires, and by the reserved first entry where the layout has one.
 */
typedef struct {
    uint32_t header_size; /* version, entries (, dma_size) */
    uint32_t entry_size;  /* sizeof(struct mft_entry) */
    uint32_t name_size;   /* MFT_NAME_SIZE; the uint32_t type follows the name */
    uint32_t block_type;  /* MFT_DEV_BLOCK_BASIC */
    uint32_t net_type;    /* MFT_DEV_NET_BASIC */
    uint32_t pci_type;    /* MFT_DEV_PCI_BASIC, or MFT_NO_TYPE */
    bool reserved_first;  /* e[0] is MFT_RESERVED_FIRST with an empty name */
} mft_layout;

#define MFT_NO_TYPE UINT32_MAX /* a device kind the layout does not have */

static const mft_layout mft_layouts[] = {
    /* Released Solo5: name[68], type, 16-byte device union, 8-byte backing union, bool. */
    {8, 104, 68, 1, 2, MFT_NO_TYPE, true},
    /* Solo5 trees with struct mft.dma_size and struct mft_pci_basic in the device union. */
    {16, 200, 68, 1, 2, 3, true},
    /* Early Solo5: name[32], MFT_BLOCK_BASIC 0 and MFT_NET_BASIC 1, no reserved entry. */
    {8, 64, 32, 0, 1, MFT_NO_TYPE, false},
};

#define MFT_ENTRY_MAX 200 /* largest entry_size above */

/* Xen's notes, from xen/include/public/elfnote.h. */
#define XEN_NOTE_NAME              "Xen"
#define XEN_ELFNOTE_ENTRY          1  /* PV entry point */
#define XEN_ELFNOTE_HYPERCALL_PAGE 2  /* PV hypercall page */
#define XEN_ELFNOTE_PHYS32_ENTRY   18 /* PVH 32-bit entry point */
/* Xen guests from before ELF notes describe themselves in this section instead (PV only). */
#define XEN_GUEST_SECTION          "__xen_guest"

/* Real kernels carry a few dozen notes; the cap bounds the work a hostile file can cause. */
#define NOTES_MAX 4096

typedef struct {
    bool is64;
    bool big_endian;
    uint16_t machine;
    uint64_t phoff;
    uint64_t shoff;
    uint16_t phentsize;
    uint16_t phnum;
    uint16_t shentsize;
    uint16_t shnum;
    uint16_t shstrndx;
} elf_header;

typedef struct {
    unsigned notes_seen;
    bool has_note_segment;
    bool solo5_abi;
    uint32_t abi_target;
    uint32_t abi_version;
    bool solo5_mft;
    bool xen;
    bool xen_pv;
    bool xen_pvh;
} elf_findings;

static uint16_t elf_u16(const elf_header *hdr, const uint8_t *p)
{
    return hdr->big_endian ? imgstore_store__be16(p) : imgstore_store__le16(p);
}

static uint32_t elf_u32(const elf_header *hdr, const uint8_t *p)
{
    return hdr->big_endian ? imgstore_store__be32(p) : imgstore_store__le32(p);
}

static uint64_t elf_u64(const elf_header *hdr, const uint8_t *p)
{
    return hdr->big_endian ? imgstore_store__be64(p) : imgstore_store__le64(p);
}

/* An address or offset: 32 or 64 bits by class. */
static uint64_t elf_addr(const elf_header *hdr, const uint8_t *p)
{
    return hdr->is64 ? elf_u64(hdr, p) : elf_u32(hdr, p);
}

/* `what` reads as the subject of a sentence: "program headers end", "segment 2 ends". */
static int check_extent(const imgstore_store__detect_ctx *ctx, const char *what, uint64_t offset,
                        uint64_t len)
{
    if (offset > UINT64_MAX - len)
        return imgstore_store__detect_malformed(
            ctx, "bad ELF: %s beyond byte 2^64 (offset %" PRIu64 ", length %" PRIu64 ")", what,
            offset, len);
    if (offset + len > ctx->size)
        return imgstore_store__detect_malformed(
            ctx, "truncated ELF: %s at byte %" PRIu64 " but the file has %" PRIu64 " bytes", what,
            offset + len, ctx->size);
    return 0;
}

static int parse_header(const imgstore_store__detect_ctx *ctx, elf_header *hdr)
{
    const uint8_t *h = ctx->head;
    size_t ehdr_size;

    if (ctx->head_len < EI_NIDENT)
        return imgstore_store__detect_malformed(
            ctx, "truncated ELF: the file has %" PRIu64 " bytes, fewer than an ELF header",
            ctx->size);
    if (h[4] != ELFCLASS32 && h[4] != ELFCLASS64)
        return imgstore_store__detect_malformed(ctx, "bad ELF: unknown class %u (EI_CLASS)", h[4]);
    if (h[5] != ELFDATA2LSB && h[5] != ELFDATA2MSB)
        return imgstore_store__detect_malformed(ctx, "bad ELF: unknown byte order %u (EI_DATA)",
                                                h[5]);
    hdr->is64 = h[4] == ELFCLASS64;
    hdr->big_endian = h[5] == ELFDATA2MSB;
    ehdr_size = hdr->is64 ? ELF64_EHDR_SIZE : ELF32_EHDR_SIZE;
    if (ctx->head_len < ehdr_size)
        return imgstore_store__detect_malformed(ctx,
                                                "truncated ELF: the header ends at byte %zu but "
                                                "the file has %" PRIu64 " bytes",
                                                ehdr_size, ctx->size);
    hdr->machine = elf_u16(hdr, h + 18);
    if (hdr->is64) {
        hdr->phoff = elf_u64(hdr, h + 32);
        hdr->shoff = elf_u64(hdr, h + 40);
        h += 54;
    } else {
        hdr->phoff = elf_u32(hdr, h + 28);
        hdr->shoff = elf_u32(hdr, h + 32);
        h += 42;
    }
    /* e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx follow e_ehsize in both classes. */
    hdr->phentsize = elf_u16(hdr, h);
    hdr->phnum = elf_u16(hdr, h + 2);
    hdr->shentsize = elf_u16(hdr, h + 4);
    hdr->shnum = elf_u16(hdr, h + 6);
    hdr->shstrndx = elf_u16(hdr, h + 8);
    return 0;
}

static const char *elf_arch(const elf_header *hdr)
{
    switch (hdr->machine) {
    case 3:
        return "i386";
    case 8:
        return hdr->is64 ? "mips64" : "mips";
    case 20:
        return "ppc";
    case 21:
        return hdr->big_endian ? "ppc64" : "ppc64le";
    case 22:
        return hdr->is64 ? "s390x" : "s390";
    case 40:
        return "arm";
    case 62:
        return "x86_64";
    case 183:
        return "aarch64";
    case 243:
        return hdr->is64 ? "riscv64" : "riscv32";
    case 258:
        return "loongarch64";
    default:
        return "";
    }
}

static int read_mft(const imgstore_store__detect_ctx *ctx, const elf_header *hdr,
                    elf_findings *found, uint64_t desc_offset, uint32_t descsz)
{
    imgstore_file_info *info = ctx->info;
    const mft_layout *layout = NULL;
    uint8_t buf[MFT_ENTRY_MAX];
    uint64_t mft_offset = desc_offset + SOLO5_MFT1_PAD;
    uint64_t mft_size;
    uint32_t version, entries;
    int err;

    if (descsz < SOLO5_MFT1_PAD + 8)
        return imgstore_store__detect_malformed(
            ctx, "bad Solo5 manifest: the note is %" PRIu32 " bytes, too short for a manifest",
            descsz);
    mft_size = descsz - SOLO5_MFT1_PAD;
    if ((err = imgstore_store__detect_read(ctx, buf, 8, mft_offset)) < 0)
        return err;
    version = elf_u32(hdr, buf);
    entries = elf_u32(hdr, buf + 4);
    if (version != SOLO5_MFT_VERSION)
        return imgstore_store__detect_malformed(
            ctx, "bad Solo5 manifest: version %" PRIu32 ", expected %d", version,
            SOLO5_MFT_VERSION);
    if (entries > SOLO5_MFT_MAX_ENTRIES)
        return imgstore_store__detect_malformed(
            ctx, "bad Solo5 manifest: %" PRIu32 " entries, at most %d allowed", entries,
            SOLO5_MFT_MAX_ENTRIES);
    for (size_t i = 0; i < sizeof(mft_layouts) / sizeof(mft_layouts[0]) && !layout; i++) {
        const mft_layout *l = &mft_layouts[i];

        if (mft_size != l->header_size + (uint64_t)entries * l->entry_size)
            continue;
        if (l->reserved_first) {
            if (entries == 0)
                continue;
            if ((err = imgstore_store__detect_read(ctx, buf, l->entry_size,
                                                   mft_offset + l->header_size)) < 0)
                return err;
            if (buf[0] != '\0' || elf_u32(hdr, buf + l->name_size) != SOLO5_MFT_RESERVED_FIRST)
                continue;
        }
        layout = l;
    }
    if (!layout)
        return imgstore_store__detect_malformed(
            ctx,
            "bad Solo5 manifest: %" PRIu64 " bytes match no known layout of %" PRIu32 " entries",
            mft_size, entries);
    for (uint32_t i = layout->reserved_first ? 1 : 0; i < entries; i++) {
        imgstore_device *dev = &info->devices[info->device_count];
        const char *type_name;
        uint32_t type;
        size_t name_len;

        if ((err = imgstore_store__detect_read(ctx, buf, layout->entry_size,
                                               mft_offset + layout->header_size +
                                                   (uint64_t)i * layout->entry_size)) < 0)
            return err;
        name_len = strnlen((const char *)buf, layout->name_size);
        if (name_len == 0 || name_len == layout->name_size)
            return imgstore_store__detect_malformed(
                ctx, "bad Solo5 manifest: entry %" PRIu32 " has %s name", i,
                name_len ? "an unterminated" : "an empty");
        for (size_t c = 0; c < name_len; c++) {
            if (buf[c] < 0x21 || buf[c] > 0x7E)
                return imgstore_store__detect_malformed(
                    ctx, "bad Solo5 manifest: entry %" PRIu32 " has a non-printable name", i);
        }
        type = elf_u32(hdr, buf + layout->name_size);
        if (type == layout->block_type)
            type_name = "block-basic";
        else if (type == layout->net_type)
            type_name = "net-basic";
        else if (type == layout->pci_type && type != MFT_NO_TYPE)
            type_name = "pci-basic";
        else
            return imgstore_store__detect_malformed(ctx,
                                                    "bad Solo5 manifest: entry %" PRIu32
                                                    " (\"%s\") has unknown device type %" PRIu32,
                                                    i, (const char *)buf, type);
        /* entries <= MFT_MAX_ENTRIES == IMGSTORE_MAX_DEVICES, so this never overflows. */
        memcpy(dev->name, buf, name_len);
        dev->name[name_len] = '\0';
        imgstore_store__detect_set(dev->type, sizeof(dev->type), type_name);
        info->device_count++;
    }
    found->solo5_mft = true;
    return 0;
}

static int handle_note(const imgstore_store__detect_ctx *ctx, const elf_header *hdr,
                       elf_findings *found, const uint8_t *name, uint32_t namesz, uint32_t type,
                       uint64_t desc_offset, uint32_t descsz)
{
    uint8_t desc[8];
    int err;

    if (namesz == sizeof(XEN_NOTE_NAME) && memcmp(name, XEN_NOTE_NAME, namesz) == 0) {
        found->xen = true;
        if (type == XEN_ELFNOTE_ENTRY || type == XEN_ELFNOTE_HYPERCALL_PAGE)
            found->xen_pv = true;
        else if (type == XEN_ELFNOTE_PHYS32_ENTRY)
            found->xen_pvh = true;
        return 0;
    }
    if (namesz != sizeof(SOLO5_NOTE_NAME) || memcmp(name, SOLO5_NOTE_NAME, namesz) != 0)
        return 0;
    if (type == SOLO5_MFT1_NOTE_TYPE && !found->solo5_mft)
        return read_mft(ctx, hdr, found, desc_offset, descsz);
    if (type != SOLO5_ABI1_NOTE_TYPE || found->solo5_abi)
        return 0;
    if (descsz < SOLO5_ABI1_INFO_SIZE)
        return imgstore_store__detect_malformed(
            ctx, "bad Solo5 ABI note: %" PRIu32 " bytes, expected %d", descsz,
            SOLO5_ABI1_INFO_SIZE);
    if ((err = imgstore_store__detect_read(ctx, desc, sizeof(desc), desc_offset)) < 0)
        return err;
    found->solo5_abi = true;
    found->abi_target = elf_u32(hdr, desc);
    found->abi_version = elf_u32(hdr, desc + 4);
    return 0;
}

/*
 * Walk the notes of one segment or section at [offset, offset + len), already checked to lie in
 * the file. As binutils reads them (ELF_NOTE_DESC_OFFSET, ELF_NOTE_NEXT_OFFSET): the
 * descriptor starts at the note's start + align_up(12 + n_namesz, align) and the next note at
 * align_up(that + n_descsz, align), with `align` 8 in 8-aligned note segments, else 4. (The
 * name alone is not padded to 8: a "GNU" property note is 12 + 4 + 16 = 32 bytes.)
 */
static int walk_notes(const imgstore_store__detect_ctx *ctx, const elf_header *hdr,
                      elf_findings *found, const char *where, uint64_t offset, uint64_t len,
                      uint64_t align)
{
    uint64_t pos = 0;
    int err;

    while (pos < len && found->notes_seen < NOTES_MAX) {
        uint8_t nhdr[ELF_NHDR_SIZE];
        uint8_t name[8];
        uint32_t namesz, descsz;
        uint64_t left, desc_rel, desc_pos, next_rel;

        if (len - pos < ELF_NHDR_SIZE)
            return imgstore_store__detect_malformed(
                ctx,
                "bad ELF: %s has %" PRIu64 " stray bytes at byte %" PRIu64 ", too few for a note",
                where, len - pos, offset + pos);
        if ((err = imgstore_store__detect_read(ctx, nhdr, sizeof(nhdr), offset + pos)) < 0)
            return err;
        namesz = elf_u32(hdr, nhdr);
        descsz = elf_u32(hdr, nhdr + 4);
        /* Both sizes are 32-bit, so the padded offsets cannot overflow 64 bits. */
        desc_rel = ((uint64_t)ELF_NHDR_SIZE + namesz + align - 1) & ~(align - 1);
        left = len - pos;
        if (desc_rel > left || descsz > left - desc_rel)
            return imgstore_store__detect_malformed(
                ctx,
                "bad ELF: the note at byte %" PRIu64 " (n_namesz %" PRIu32 ", n_descsz %" PRIu32
                ") overruns %s, which ends at byte %" PRIu64,
                offset + pos, namesz, descsz, where, offset + len);
        desc_pos = pos + desc_rel;
        next_rel = (desc_rel + descsz + align - 1) & ~(align - 1);
        found->notes_seen++;
        if (namesz > 0 && namesz <= sizeof(name)) {
            if ((err = imgstore_store__detect_read(ctx, name, namesz,
                                                   offset + pos + ELF_NHDR_SIZE)) < 0)
                return err;
            if ((err = handle_note(ctx, hdr, found, name, namesz, elf_u32(hdr, nhdr + 8),
                                   offset + desc_pos, descsz)) < 0)
                return err;
        }
        /* The last descriptor's padding may be cut off by the end of the segment. */
        if (next_rel > len - pos)
            break;
        pos += next_rel;
    }
    return 0;
}

static int scan_segments(const imgstore_store__detect_ctx *ctx, const elf_header *hdr,
                         elf_findings *found)
{
    size_t entry_size = hdr->is64 ? ELF64_PHDR_SIZE : ELF32_PHDR_SIZE;
    uint8_t ph[ELF64_PHDR_SIZE];
    char what[64];
    int err;

    if (hdr->phnum == 0)
        return 0;
    if (hdr->phentsize != entry_size)
        return imgstore_store__detect_malformed(
            ctx, "bad ELF: e_phentsize is %u but ELF%d program headers are %zu bytes",
            hdr->phentsize, hdr->is64 ? 64 : 32, entry_size);
    if ((err = check_extent(ctx, "program headers end", hdr->phoff,
                            (uint64_t)hdr->phnum * entry_size)) < 0)
        return err;
    for (unsigned i = 0; i < hdr->phnum; i++) {
        uint32_t type;
        uint64_t offset, filesz, align;

        if ((err = imgstore_store__detect_read(ctx, ph, entry_size,
                                               hdr->phoff + (uint64_t)i * entry_size)) < 0)
            return err;
        type = elf_u32(hdr, ph);
        if (type != PT_LOAD && type != PT_NOTE)
            continue;
        offset = elf_addr(hdr, ph + (hdr->is64 ? 8 : 4));
        filesz = elf_addr(hdr, ph + (hdr->is64 ? 32 : 16));
        align = elf_addr(hdr, ph + (hdr->is64 ? 48 : 28));
        snprintf(what, sizeof(what), "%s %u ends", type == PT_NOTE ? "note segment" : "segment", i);
        if (filesz > 0 && (err = check_extent(ctx, what, offset, filesz)) < 0)
            return err;
        if (type != PT_NOTE)
            continue;
        found->has_note_segment = true;
        snprintf(what, sizeof(what), "note segment %u", i);
        if ((err = walk_notes(ctx, hdr, found, what, offset, filesz, align == 8 ? 8 : 4)) < 0)
            return err;
    }
    return 0;
}

/*
 * Sections matter only when the segments said nothing: an ELF without PT_NOTE (notes live in
 * SHT_NOTE sections then) and old Xen PV guests that use a __xen_guest section.
 */
static int scan_sections(const imgstore_store__detect_ctx *ctx, const elf_header *hdr,
                         elf_findings *found)
{
    size_t entry_size = hdr->is64 ? ELF64_SHDR_SIZE : ELF32_SHDR_SIZE;
    uint8_t sh[ELF64_SHDR_SIZE];
    uint8_t name[sizeof(XEN_GUEST_SECTION)];
    uint64_t strtab_offset = 0, strtab_size = 0;
    char what[64];
    int err;

    /* e_shnum 0 with an offset is extended numbering, which only relocatable objects need. */
    if (hdr->shnum == 0 || hdr->shoff == 0)
        return 0;
    if (hdr->shentsize != entry_size)
        return imgstore_store__detect_malformed(
            ctx, "bad ELF: e_shentsize is %u but ELF%d section headers are %zu bytes",
            hdr->shentsize, hdr->is64 ? 64 : 32, entry_size);
    if ((err = check_extent(ctx, "section headers end", hdr->shoff,
                            (uint64_t)hdr->shnum * entry_size)) < 0)
        return err;
    if (found->has_note_segment && (found->xen || found->solo5_abi || found->solo5_mft))
        return 0;
    if (hdr->shstrndx < hdr->shnum) {
        if ((err = imgstore_store__detect_read(
                 ctx, sh, entry_size, hdr->shoff + (uint64_t)hdr->shstrndx * entry_size)) < 0)
            return err;
        if (elf_u32(hdr, sh + 4) != SHT_NOBITS) {
            strtab_offset = elf_addr(hdr, sh + (hdr->is64 ? 24 : 16));
            strtab_size = elf_addr(hdr, sh + (hdr->is64 ? 32 : 20));
            snprintf(what, sizeof(what), "section %u (names) ends", hdr->shstrndx);
            if ((err = check_extent(ctx, what, strtab_offset, strtab_size)) < 0)
                return err;
        }
    }
    for (unsigned i = 1; i < hdr->shnum; i++) {
        uint32_t name_index, type;
        uint64_t offset, size, align;

        if ((err = imgstore_store__detect_read(ctx, sh, entry_size,
                                               hdr->shoff + (uint64_t)i * entry_size)) < 0)
            return err;
        name_index = elf_u32(hdr, sh);
        type = elf_u32(hdr, sh + 4);
        offset = elf_addr(hdr, sh + (hdr->is64 ? 24 : 16));
        size = elf_addr(hdr, sh + (hdr->is64 ? 32 : 20));
        align = elf_addr(hdr, sh + (hdr->is64 ? 48 : 32));
        if (name_index < strtab_size && strtab_size - name_index >= sizeof(name)) {
            if ((err = imgstore_store__detect_read(ctx, name, sizeof(name),
                                                   strtab_offset + name_index)) < 0)
                return err;
            if (memcmp(name, XEN_GUEST_SECTION, sizeof(name)) == 0) {
                found->xen = true;
                found->xen_pv = true;
            }
        }
        if (type != SHT_NOTE || found->has_note_segment)
            continue;
        snprintf(what, sizeof(what), "note section %u ends", i);
        if ((err = check_extent(ctx, what, offset, size)) < 0)
            return err;
        snprintf(what, sizeof(what), "note section %u", i);
        if ((err = walk_notes(ctx, hdr, found, what, offset, size, align == 8 ? 8 : 4)) < 0)
            return err;
    }
    return 0;
}

static void describe(imgstore_file_info *info, const elf_header *hdr, const elf_findings *found)
{
    imgstore_store__detect_set(info->arch, sizeof(info->arch), elf_arch(hdr));
    if (found->xen_pv && found->xen_pvh)
        imgstore_store__detect_set(info->xen_mode, sizeof(info->xen_mode), "pv+pvh");
    else if (found->xen_pv)
        imgstore_store__detect_set(info->xen_mode, sizeof(info->xen_mode), "pv");
    else if (found->xen_pvh)
        imgstore_store__detect_set(info->xen_mode, sizeof(info->xen_mode), "pvh");
    if (found->solo5_abi || found->solo5_mft) {
        const char *target = NULL;

        if (found->solo5_abi &&
            found->abi_target < sizeof(solo5_targets) / sizeof(solo5_targets[0]))
            target = solo5_targets[found->abi_target];
        imgstore_store__detect_set(info->kind, sizeof(info->kind), "unikernel");
        /* A target newer than this table is still a unikernel; only its name is unknown. */
        if (target) {
            imgstore_store__detect_set(info->solo5_target, sizeof(info->solo5_target), target);
            snprintf(info->format, sizeof(info->format), "solo5-%s", target);
        } else {
            imgstore_store__detect_set(info->format, sizeof(info->format), "solo5");
        }
        info->solo5_abi_version = found->abi_version;
    } else if (found->xen) {
        imgstore_store__detect_set(info->kind, sizeof(info->kind), "kernel");
        imgstore_store__detect_set(info->format, sizeof(info->format), "xen-elf");
    } else {
        imgstore_store__detect_set(info->kind, sizeof(info->kind), "unknown");
        imgstore_store__detect_set(info->format, sizeof(info->format), "elf");
    }
}

int imgstore_store__detect_elf(imgstore_store__detect_ctx *ctx)
{
    elf_header hdr = {0};
    elf_findings found = {0};
    int err;

    if (!imgstore_store__detect_head_has(ctx, 0, elf_magic, sizeof(elf_magic)))
        return 0;
    ctx->matched = true;
    if ((err = parse_header(ctx, &hdr)) < 0)
        return err;
    if ((err = scan_segments(ctx, &hdr, &found)) < 0)
        return err;
    if ((err = scan_sections(ctx, &hdr, &found)) < 0)
        return err;
    describe(ctx->info, &hdr, &found);
    return 0;
}
