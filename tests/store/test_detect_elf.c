/*
 * ELF detection tests (store/detect_elf.c). No Solo5 or Xen binary ships with the fixtures, so
 * the test builds them byte by byte from the documented layouts: an ELF header, PT_NOTE program
 * headers holding "Solo5" notes (Solo5's include/solo5/elf_abi.h and mft_abi.h) and "Xen" notes
 * (xen/include/public/elfnote.h), and a PT_LOAD over the whole file. Then it cuts, stretches and
 * corrupts them: every malformed variant must be refused with a message, never read out of
 * bounds (the suite runs under ASan and UBSan).
 */
#include "store/store_internal.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "detect_test_util.h"

#include <stdlib.h>
#include <string.h>

#define PT_LOAD  1
#define PT_NOTE  4
#define SHT_NOTE 7

#define EM_386     3
#define EM_PPC64   21
#define EM_X86_64  62
#define EM_AARCH64 183

#define SOLO5_ABI1 0x31494241u
#define SOLO5_MFT1 0x3154464du
#define MFT_BLOCK  1
#define MFT_NET    2
#define MFT_FIRST  (1u << 30)
#define TARGET_HVT 1
#define TARGET_SPT 2
#define TARGET_XEN 6

#define XEN_ENTRY          1
#define XEN_HYPERCALL_PAGE 2
#define XEN_GUEST_OS       6
#define XEN_PHYS32_ENTRY   18

#define IMAGE_CAP (64 * 1024)

/* ---- reading ------------------------------------------------------------------------- */

/* ---- building ------------------------------------------------------------------------ */

typedef struct {
    uint8_t *data;
    size_t len;
    bool big_endian;
    bool is64;
    size_t phoff;
    unsigned phnum;
    unsigned phused;
    size_t notes_start;
} elf_image;

static void store16(uint8_t *p, uint16_t v, bool be)
{
    for (int i = 0; i < 2; i++)
        p[be ? 1 - i : i] = (uint8_t)(v >> (8 * i));
}

static void store32(uint8_t *p, uint32_t v, bool be)
{
    for (int i = 0; i < 4; i++)
        p[be ? 3 - i : i] = (uint8_t)(v >> (8 * i));
}

static void store64(uint8_t *p, uint64_t v, bool be)
{
    for (int i = 0; i < 8; i++)
        p[be ? 7 - i : i] = (uint8_t)(v >> (8 * i));
}

static size_t append(elf_image *img, const void *bytes, size_t len)
{
    size_t at = img->len;

    assert_true(len <= IMAGE_CAP - img->len);
    if (bytes)
        memcpy(img->data + at, bytes, len);
    img->len += len;
    return at;
}

static void align_to(elf_image *img, size_t n)
{
    while (img->len % n != 0)
        append(img, NULL, 1);
}

/* Header and room for `note_segments` PT_NOTE headers plus the final PT_LOAD. */
static void elf_begin(elf_image *img, bool is64, bool be, uint16_t machine, unsigned note_segments)
{
    size_t ehsize = is64 ? 64 : 52, phentsize = is64 ? 56 : 32;
    uint8_t *h;

    memset(img, 0, sizeof(*img));
    img->data = calloc(1, IMAGE_CAP);
    assert_non_null(img->data);
    img->big_endian = be;
    img->is64 = is64;
    append(img, NULL, ehsize);
    h = img->data;
    memcpy(h, "\177ELF", 4);
    h[4] = is64 ? 2 : 1;
    h[5] = be ? 2 : 1;
    h[6] = 1;
    store16(h + 16, 2, be); /* ET_EXEC */
    store16(h + 18, machine, be);
    store32(h + 20, 1, be);
    img->phoff = ehsize;
    img->phnum = note_segments + 1;
    if (is64) {
        store64(h + 32, img->phoff, be);
        store16(h + 52, (uint16_t)ehsize, be);
        store16(h + 54, (uint16_t)phentsize, be);
        store16(h + 56, (uint16_t)img->phnum, be);
    } else {
        store32(h + 28, (uint32_t)img->phoff, be);
        store16(h + 40, (uint16_t)ehsize, be);
        store16(h + 42, (uint16_t)phentsize, be);
        store16(h + 44, (uint16_t)img->phnum, be);
    }
    append(img, NULL, img->phnum * phentsize);
}

static size_t phdr_at(const elf_image *img, unsigned index)
{
    return img->phoff + index * (img->is64 ? 56u : 32u);
}

static void elf_phdr(elf_image *img, uint32_t type, uint64_t offset, uint64_t filesz,
                     uint64_t align)
{
    uint8_t *p = img->data + phdr_at(img, img->phused++);
    bool be = img->big_endian;

    assert_true(img->phused <= img->phnum);
    store32(p, type, be);
    if (img->is64) {
        store32(p + 4, 4, be);
        store64(p + 8, offset, be);
        store64(p + 16, offset, be);
        store64(p + 24, offset, be);
        store64(p + 32, filesz, be);
        store64(p + 40, filesz, be);
        store64(p + 48, align, be);
    } else {
        store32(p + 4, (uint32_t)offset, be);
        store32(p + 8, (uint32_t)offset, be);
        store32(p + 12, (uint32_t)offset, be);
        store32(p + 16, (uint32_t)filesz, be);
        store32(p + 20, (uint32_t)filesz, be);
        store32(p + 24, 4, be);
        store32(p + 28, (uint32_t)align, be);
    }
}

static void notes_begin(elf_image *img)
{
    align_to(img, 8);
    img->notes_start = img->len;
}

static void notes_end(elf_image *img)
{
    elf_phdr(img, PT_NOTE, img->notes_start, img->len - img->notes_start, 4);
}

/* The note: header, name padded to 4, descriptor padded to 4. Returns its offset. */
static size_t append_note(elf_image *img, const char *name, uint32_t type, const void *desc,
                          uint32_t desc_len)
{
    uint32_t namesz = (uint32_t)strlen(name) + 1;
    size_t at = append(img, NULL, 12);

    store32(img->data + at, namesz, img->big_endian);
    store32(img->data + at + 4, desc_len, img->big_endian);
    store32(img->data + at + 8, type, img->big_endian);
    append(img, name, namesz);
    align_to(img, 4);
    append(img, desc, desc_len);
    align_to(img, 4);
    return at;
}

static void elf_finish(elf_image *img)
{
    elf_phdr(img, PT_LOAD, 0, img->len, 4096);
}

static void append_solo5_abi(elf_image *img, uint32_t target, uint32_t version)
{
    uint8_t desc[16] = {0};

    store32(desc, target, img->big_endian);
    store32(desc + 4, version, img->big_endian);
    append_note(img, "Solo5", SOLO5_ABI1, desc, sizeof(desc));
}

typedef struct {
    const char *name;
    uint32_t type;
} device;

typedef struct {
    uint32_t header_size;
    uint32_t entry_size;
    uint32_t name_size;
    bool reserved_first;
} mft_layout;

/* Released Solo5: 8-byte header, 104-byte entries with name[68], reserved e[0]. */
static const mft_layout layout_current = {8, 104, 68, true};
/* Early Solo5: name[32], 64-byte entries, block 0 and net 1, no reserved entry. */
static const mft_layout layout_early = {8, 64, 32, false};

/*
 * struct mft1_note's descriptor: 4 bytes of alignment padding, then struct mft. Returns the
 * note's offset so that tests can corrupt it.
 */
static size_t append_solo5_mft_layout(elf_image *img, const mft_layout *layout,
                                      const device *devices, uint32_t count)
{
    static uint8_t desc[4 + 16 + 65 * 200];
    bool be = img->big_endian;
    uint32_t entries = count + (layout->reserved_first ? 1 : 0);
    uint32_t len = 4 + layout->header_size + entries * layout->entry_size;
    uint8_t *e = desc + 4 + layout->header_size;

    memset(desc, 0, sizeof(desc));
    store32(desc + 4, 1, be);
    store32(desc + 8, entries, be);
    if (layout->reserved_first) {
        store32(e + layout->name_size, MFT_FIRST, be);
        e += layout->entry_size;
    }
    for (uint32_t i = 0; i < count; i++, e += layout->entry_size) {
        memcpy(e, devices[i].name, strlen(devices[i].name));
        store32(e + layout->name_size, devices[i].type, be);
    }
    return append_note(img, "Solo5", SOLO5_MFT1, desc, len);
}

static size_t append_solo5_mft(elf_image *img, const device *devices, uint32_t count)
{
    return append_solo5_mft_layout(img, &layout_current, devices, count);
}

static const device two_devices[] = {{"service", MFT_NET}, {"storage", MFT_BLOCK}};

/*
 * A Solo5 unikernel as the Solo5 toolchain lays it out: one PT_NOTE per note. Returns the
 * manifest note's offset.
 */
static size_t build_solo5(elf_image *img, uint16_t machine, bool be, uint32_t target)
{
    size_t mft;

    elf_begin(img, true, be, machine, 2);
    notes_begin(img);
    append_solo5_abi(img, target, 2);
    notes_end(img);
    notes_begin(img);
    mft = append_solo5_mft(img, two_devices, 2);
    notes_end(img);
    append(img, NULL, 64); /* .text */
    elf_finish(img);
    return mft;
}

static void assert_refused(const elf_image *img, size_t len, const char *needle)
{
    imgstore_file_info info;

    assert_int_equal(detect(&info, "app.hvt", img->data, len), IMGSTORE_EINVALID);
    assert_int_equal(imgstore_error_last_code(), IMGSTORE_EINVALID);
    assert_true(strncmp(imgstore_error_last(), "app.hvt: ", 9) == 0);
    if (!strstr(imgstore_error_last(), needle))
        fail_msg("message \"%s\" lacks \"%s\"", imgstore_error_last(), needle);
    /* Nothing is handed out on failure. */
    assert_string_equal(info.kind, "");
}

/* ---- Solo5 --------------------------------------------------------------------------- */

static void detect_solo5_hvt_reads_target_and_devices(void **state)
{
    imgstore_file_info info;
    elf_image img;

    (void)state;
    build_solo5(&img, EM_X86_64, false, TARGET_HVT);
    assert_int_equal(detect(&info, "app.hvt", img.data, img.len), 0);
    assert_string_equal(info.kind, "unikernel");
    assert_string_equal(info.format, "solo5-hvt");
    assert_string_equal(info.solo5_target, "hvt");
    assert_int_equal(info.solo5_abi_version, 2);
    assert_string_equal(info.arch, "x86_64");
    assert_string_equal(info.xen_mode, "");
    assert_int_equal(info.device_count, 2);
    assert_string_equal(info.devices[0].name, "service");
    assert_string_equal(info.devices[0].type, "net-basic");
    assert_string_equal(info.devices[1].name, "storage");
    assert_string_equal(info.devices[1].type, "block-basic");
    free(img.data);
}

static void detect_solo5_spt_walks_past_other_notes(void **state)
{
    static const device one[] = {{"disk0", MFT_BLOCK}};
    imgstore_file_info info;
    elf_image img;

    (void)state;
    elf_begin(&img, true, false, EM_AARCH64, 1);
    notes_begin(&img);
    /* A build id and an OpenBSD note (Solo5 adds one) before the Solo5 notes, in one segment. */
    append_note(&img, "GNU", 3, "0123456789abcdefghij", 20);
    append_note(&img, "OpenBSD", 1, "\0\0\0\0", 4);
    append_solo5_abi(&img, TARGET_SPT, 1);
    append_solo5_mft(&img, one, 1);
    notes_end(&img);
    elf_finish(&img);
    assert_int_equal(detect(&info, "app.spt", img.data, img.len), 0);
    assert_string_equal(info.format, "solo5-spt");
    assert_string_equal(info.arch, "aarch64");
    assert_int_equal(info.solo5_abi_version, 1);
    assert_int_equal(info.device_count, 1);
    assert_string_equal(info.devices[0].name, "disk0");
    assert_string_equal(info.devices[0].type, "block-basic");
    free(img.data);
}

static void detect_solo5_xen_records_pvh_note(void **state)
{
    uint8_t entry[4] = {0x00, 0x10, 0x00, 0x00};
    imgstore_file_info info;
    elf_image img;

    (void)state;
    elf_begin(&img, true, false, EM_X86_64, 3);
    notes_begin(&img);
    append_solo5_abi(&img, TARGET_XEN, 1);
    notes_end(&img);
    notes_begin(&img);
    append_solo5_mft(&img, two_devices, 2);
    notes_end(&img);
    notes_begin(&img);
    append_note(&img, "Xen", XEN_PHYS32_ENTRY, entry, sizeof(entry));
    notes_end(&img);
    elf_finish(&img);
    assert_int_equal(detect(&info, "app.xen", img.data, img.len), 0);
    assert_string_equal(info.kind, "unikernel");
    assert_string_equal(info.format, "solo5-xen");
    assert_string_equal(info.solo5_target, "xen");
    assert_string_equal(info.xen_mode, "pvh");
    assert_int_equal(info.device_count, 2);
    free(img.data);
}

static void detect_solo5_big_endian_ppc64(void **state)
{
    imgstore_file_info info;
    elf_image img;

    (void)state;
    build_solo5(&img, EM_PPC64, true, TARGET_SPT);
    assert_int_equal(detect(&info, "app.spt", img.data, img.len), 0);
    assert_string_equal(info.format, "solo5-spt");
    assert_string_equal(info.arch, "ppc64");
    assert_int_equal(info.solo5_abi_version, 2);
    assert_int_equal(info.device_count, 2);
    assert_string_equal(info.devices[1].type, "block-basic");
    free(img.data);
}

static void detect_solo5_without_devices(void **state)
{
    imgstore_file_info info;
    elf_image img;

    (void)state;
    elf_begin(&img, true, false, EM_X86_64, 1);
    notes_begin(&img);
    append_solo5_abi(&img, TARGET_HVT, 2);
    append_solo5_mft(&img, NULL, 0);
    notes_end(&img);
    elf_finish(&img);
    assert_int_equal(detect(&info, "hello.hvt", img.data, img.len), 0);
    assert_string_equal(info.format, "solo5-hvt");
    assert_int_equal(info.device_count, 0);
    free(img.data);
}

static void detect_solo5_early_manifest_layout(void **state)
{
    /* Early Solo5 numbered block devices 0 and network devices 1. */
    static const device early[] = {{"net0", 1}, {"blk0", 0}, {"net1", 1}};
    imgstore_file_info info;
    elf_image img;

    (void)state;
    elf_begin(&img, true, false, EM_X86_64, 1);
    notes_begin(&img);
    append_solo5_abi(&img, TARGET_HVT, 1);
    append_solo5_mft_layout(&img, &layout_early, early, 3);
    notes_end(&img);
    elf_finish(&img);
    assert_int_equal(detect(&info, "old.hvt", img.data, img.len), 0);
    assert_int_equal(info.device_count, 3);
    assert_string_equal(info.devices[0].type, "net-basic");
    assert_string_equal(info.devices[1].name, "blk0");
    assert_string_equal(info.devices[1].type, "block-basic");
    free(img.data);
}

static void detect_solo5_unknown_target_is_still_unikernel(void **state)
{
    imgstore_file_info info;
    elf_image img;

    (void)state;
    build_solo5(&img, EM_X86_64, false, 42);
    assert_int_equal(detect(&info, "app.new", img.data, img.len), 0);
    assert_string_equal(info.kind, "unikernel");
    assert_string_equal(info.format, "solo5");
    assert_string_equal(info.solo5_target, "");
    assert_int_equal(info.device_count, 2);
    free(img.data);
}

/* ---- Xen ----------------------------------------------------------------------------- */

static void detect_xen_pv_kernel(void **state)
{
    uint8_t addr[8] = {0};
    imgstore_file_info info;
    elf_image img;

    (void)state;
    elf_begin(&img, true, false, EM_X86_64, 1);
    notes_begin(&img);
    append_note(&img, "Xen", XEN_GUEST_OS, "Mini-OS", 8);
    append_note(&img, "Xen", XEN_ENTRY, addr, sizeof(addr));
    append_note(&img, "Xen", XEN_HYPERCALL_PAGE, addr, sizeof(addr));
    notes_end(&img);
    elf_finish(&img);
    assert_int_equal(detect(&info, "mir-app.xen", img.data, img.len), 0);
    assert_string_equal(info.kind, "kernel");
    assert_string_equal(info.format, "xen-elf");
    assert_string_equal(info.xen_mode, "pv");
    assert_string_equal(info.solo5_target, "");
    free(img.data);
}

static void detect_xen_pv_and_pvh_elf32_kernel(void **state)
{
    uint8_t addr[4] = {0};
    imgstore_file_info info;
    elf_image img;

    (void)state;
    elf_begin(&img, false, false, EM_386, 1);
    notes_begin(&img);
    append_note(&img, "Xen", XEN_GUEST_OS, "linux", 6);
    append_note(&img, "Xen", XEN_ENTRY, addr, sizeof(addr));
    append_note(&img, "Xen", XEN_PHYS32_ENTRY, addr, sizeof(addr));
    notes_end(&img);
    elf_finish(&img);
    assert_int_equal(detect(&info, "vmlinux", img.data, img.len), 0);
    assert_string_equal(info.kind, "kernel");
    assert_string_equal(info.xen_mode, "pv+pvh");
    assert_string_equal(info.arch, "i386");
    free(img.data);
}

typedef struct {
    const char *name;
    uint32_t type;
    size_t offset;
    size_t size;
} section;

/* Append a section table (null section first, names last) and point the ELF64 header at it. */
static void elf_sections(elf_image *img, const section *sections, unsigned count)
{
    uint32_t name_at[8];
    size_t names = img->len, table;
    unsigned total = count + 2;

    assert_true(count <= 6);
    append(img, "", 1);
    for (unsigned i = 0; i < count; i++)
        name_at[i] =
            (uint32_t)(append(img, sections[i].name, strlen(sections[i].name) + 1) - names);
    name_at[count] = (uint32_t)(append(img, ".shstrtab", 10) - names);
    align_to(img, 8);
    table = append(img, NULL, total * 64);
    for (unsigned i = 0; i <= count; i++) {
        uint8_t *sh = img->data + table + (i + 1) * 64;
        bool names_section = i == count;

        store32(sh, name_at[i], false);
        store32(sh + 4, names_section ? 3 : sections[i].type, false);
        store64(sh + 24, names_section ? names : sections[i].offset, false);
        store64(sh + 32, names_section ? table - names : sections[i].size, false);
        store64(sh + 48, 4, false);
    }
    store64(img->data + 40, table, false);
    store16(img->data + 58, 64, false);
    store16(img->data + 60, (uint16_t)total, false);
    store16(img->data + 62, (uint16_t)(total - 1), false);
}

static void detect_xen_guest_section_means_pv(void **state)
{
    static const char guest[] = "GUEST_OS=Mini-OS,XEN_VER=xen-3.0,VIRT_BASE=0x0";
    imgstore_file_info info;
    elf_image img;
    section sections[1];

    (void)state;
    elf_begin(&img, true, false, EM_X86_64, 0);
    sections[0] = (section){"__xen_guest", 1, append(&img, guest, sizeof(guest)), sizeof(guest)};
    elf_sections(&img, sections, 1);
    elf_finish(&img);
    assert_int_equal(detect(&info, "old.xen", img.data, img.len), 0);
    assert_string_equal(info.format, "xen-elf");
    assert_string_equal(info.xen_mode, "pv");
    free(img.data);
}

static void detect_solo5_notes_in_sections_without_note_segments(void **state)
{
    imgstore_file_info info;
    elf_image img;
    section sections[2];
    size_t start;

    (void)state;
    elf_begin(&img, true, false, EM_X86_64, 0);
    start = img.len;
    append_solo5_abi(&img, TARGET_HVT, 2);
    sections[0] = (section){".note.solo5.abi", SHT_NOTE, start, img.len - start};
    start = img.len;
    append_solo5_mft(&img, two_devices, 2);
    sections[1] = (section){".note.solo5.manifest", SHT_NOTE, start, img.len - start};
    elf_sections(&img, sections, 2);
    elf_finish(&img);
    assert_int_equal(detect(&info, "app.hvt", img.data, img.len), 0);
    assert_string_equal(info.format, "solo5-hvt");
    assert_int_equal(info.device_count, 2);
    free(img.data);
}

static void detect_plain_elf_is_unknown_elf(void **state)
{
    imgstore_file_info info;
    elf_image img;

    (void)state;
    elf_begin(&img, true, false, EM_AARCH64, 0);
    append(&img, "some code", 9);
    elf_finish(&img);
    assert_int_equal(detect(&info, "tool", img.data, img.len), 0);
    assert_string_equal(info.kind, "unknown");
    assert_string_equal(info.format, "elf");
    assert_string_equal(info.arch, "aarch64");
    free(img.data);
}

/* An 8-aligned PT_NOTE segment holding one GNU property note (x86 ISA level), as gcc 12 and
 * binutils emit in every x86-64 binary: 12 + 4 ("GNU\0") + 16 = 32 bytes, the descriptor
 * right after the name. Padding the name to 8 refused every modern binary. */
static void detect_walks_8_aligned_gnu_property_notes(void **state)
{
    imgstore_file_info info;
    elf_image img;
    size_t at;
    uint8_t property[16] = {0x02, 0x80, 0x00, 0xc0, 0x04, 0x00, 0x00, 0x00,
                            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};

    (void)state;
    elf_begin(&img, true, false, EM_X86_64, 1);
    notes_begin(&img);
    at = append(&img, NULL, 12);
    store32(img.data + at, 4, false);
    store32(img.data + at + 4, sizeof(property), false);
    store32(img.data + at + 8, 5, false); /* NT_GNU_PROPERTY_TYPE_0 */
    append(&img, "GNU", 4);
    append(&img, property, sizeof(property));
    elf_phdr(&img, PT_NOTE, img.notes_start, img.len - img.notes_start, 8);
    elf_finish(&img);
    assert_int_equal(img.len - img.notes_start, 32);
    assert_int_equal(detect(&info, "tool", img.data, img.len), 0);
    assert_string_equal(info.format, "elf");
    free(img.data);
}

/* The test binary itself: a real gcc-built x86-64 ELF with GNU property and build-id notes. */
static void detect_accepts_a_real_toolchain_binary(void **state)
{
    imgstore_file_info info;
    uint8_t *data = malloc(64u << 20);
    size_t len = 0;
    FILE *f = fopen("/proc/self/exe", "rb");

    (void)state;
    assert_non_null(data);
    assert_non_null(f);
    len = fread(data, 1, 64u << 20, f);
    fclose(f);
    assert_true(len > 1024);
    assert_int_equal(detect(&info, "tool", data, len), 0);
    assert_string_equal(info.format, "elf");
    free(data);
}

/* ---- malformed ----------------------------------------------------------------------- */

static void detect_refuses_truncated_elf(void **state)
{
    elf_image img;

    (void)state;
    build_solo5(&img, EM_X86_64, false, TARGET_HVT);
    /* Every cut, from inside the header to one byte short, is seen. */
    for (size_t len = 4; len < img.len; len++)
        assert_refused(&img, len, "truncated ELF");
    assert_refused(&img, 100,
                   "truncated ELF: program headers end at byte 232 but the file has "
                   "100 bytes");
    assert_refused(&img, 200, "program headers end at byte 232");
    assert_refused(&img, img.len - 1, "segment 2 ends");
    free(img.data);
}

static void detect_refuses_overrunning_note_sizes(void **state)
{
    const uint32_t bad_sizes[][2] = {
        {6, 0xFFFFFFFFu},
        {0xFFFFFFF0u, 16},
        {0xFFFFFFFFu, 0xFFFFFFFFu},
        {6, 4 + 8 + 3 * 104 + 4},
    };
    elf_image img;
    size_t mft;

    (void)state;
    elf_begin(&img, true, false, EM_X86_64, 1);
    notes_begin(&img);
    append_solo5_abi(&img, TARGET_HVT, 2);
    mft = append_solo5_mft(&img, two_devices, 2);
    notes_end(&img);
    elf_finish(&img);
    for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
        store32(img.data + mft, bad_sizes[i][0], false);
        store32(img.data + mft + 4, bad_sizes[i][1], false);
        assert_refused(&img, img.len, "overruns note segment 0");
    }
    free(img.data);
}

static void detect_refuses_stray_bytes_after_notes(void **state)
{
    elf_image img;

    (void)state;
    elf_begin(&img, true, false, EM_X86_64, 1);
    notes_begin(&img);
    append_solo5_abi(&img, TARGET_HVT, 2);
    append(&img, "\0\0\0\0\0\0\0\0", 8);
    notes_end(&img);
    elf_finish(&img);
    assert_refused(&img, img.len, "stray bytes");
    free(img.data);
}

static void detect_refuses_bad_phentsize(void **state)
{
    elf_image img;

    (void)state;
    build_solo5(&img, EM_X86_64, false, TARGET_HVT);
    store16(img.data + 54, 40, false);
    assert_refused(&img, img.len, "e_phentsize is 40");
    free(img.data);
}

static void detect_refuses_offsets_past_2_64(void **state)
{
    elf_image img;

    (void)state;
    build_solo5(&img, EM_X86_64, false, TARGET_HVT);
    store64(img.data + 32, UINT64_MAX - 8, false); /* e_phoff */
    assert_refused(&img, img.len, "beyond byte 2^64");
    free(img.data);

    build_solo5(&img, EM_X86_64, false, TARGET_HVT);
    store64(img.data + phdr_at(&img, 0) + 8, UINT64_MAX - 4, false); /* p_offset */
    assert_refused(&img, img.len, "note segment 0 ends beyond byte 2^64");
    store64(img.data + phdr_at(&img, 0) + 8, 64, false);
    store64(img.data + phdr_at(&img, 0) + 32, UINT64_MAX, false); /* p_filesz */
    assert_refused(&img, img.len, "note segment 0 ends");
    free(img.data);
}

static void detect_refuses_bad_elf_ident(void **state)
{
    elf_image img;

    (void)state;
    build_solo5(&img, EM_X86_64, false, TARGET_HVT);
    img.data[4] = 3;
    assert_refused(&img, img.len, "unknown class 3");
    img.data[4] = 2;
    img.data[5] = 0;
    assert_refused(&img, img.len, "unknown byte order 0");
    free(img.data);
}

static void detect_refuses_bad_solo5_manifest(void **state)
{
    static const device bad_type[] = {{"net0", 7}};
    elf_image img;
    size_t mft;

    (void)state;
    /* More entries than MFT_MAX_ENTRIES. */
    mft = build_solo5(&img, EM_X86_64, false, TARGET_HVT);
    store32(img.data + mft + 20 + 4 + 4, 65, false);
    assert_refused(&img, img.len, "65 entries");
    /* Entries that do not match the note size. */
    store32(img.data + mft + 20 + 4 + 4, 2, false);
    assert_refused(&img, img.len, "match no known layout");
    /* A manifest version Solo5 never wrote. */
    store32(img.data + mft + 20 + 4 + 4, 3, false);
    store32(img.data + mft + 20 + 4, 2, false);
    assert_refused(&img, img.len, "version 2");
    store32(img.data + mft + 20 + 4, 1, false);
    /* A name that fills its 68 bytes. */
    memset(img.data + mft + 20 + 4 + 8 + 104, 'a', 68);
    assert_refused(&img, img.len, "unterminated name");
    memset(img.data + mft + 20 + 4 + 8 + 104, 0, 68);
    assert_refused(&img, img.len, "entry 1 has an empty name");
    free(img.data);

    elf_begin(&img, true, false, EM_X86_64, 1);
    notes_begin(&img);
    append_solo5_abi(&img, TARGET_HVT, 2);
    append_solo5_mft(&img, bad_type, 1);
    notes_end(&img);
    elf_finish(&img);
    assert_refused(&img, img.len, "unknown device type 7");
    free(img.data);
}

static void detect_refuses_short_solo5_abi_note(void **state)
{
    elf_image img;

    (void)state;
    elf_begin(&img, true, false, EM_X86_64, 1);
    notes_begin(&img);
    append_note(&img, "Solo5", SOLO5_ABI1, "\1\0\0\0", 4);
    notes_end(&img);
    elf_finish(&img);
    assert_refused(&img, img.len, "bad Solo5 ABI note: 4 bytes");
    free(img.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(detect_solo5_hvt_reads_target_and_devices),
        cmocka_unit_test(detect_solo5_spt_walks_past_other_notes),
        cmocka_unit_test(detect_solo5_xen_records_pvh_note),
        cmocka_unit_test(detect_solo5_big_endian_ppc64),
        cmocka_unit_test(detect_solo5_without_devices),
        cmocka_unit_test(detect_solo5_early_manifest_layout),
        cmocka_unit_test(detect_solo5_unknown_target_is_still_unikernel),
        cmocka_unit_test(detect_xen_pv_kernel),
        cmocka_unit_test(detect_xen_pv_and_pvh_elf32_kernel),
        cmocka_unit_test(detect_xen_guest_section_means_pv),
        cmocka_unit_test(detect_solo5_notes_in_sections_without_note_segments),
        cmocka_unit_test(detect_plain_elf_is_unknown_elf),
        cmocka_unit_test(detect_walks_8_aligned_gnu_property_notes),
        cmocka_unit_test(detect_accepts_a_real_toolchain_binary),
        cmocka_unit_test(detect_refuses_truncated_elf),
        cmocka_unit_test(detect_refuses_overrunning_note_sizes),
        cmocka_unit_test(detect_refuses_stray_bytes_after_notes),
        cmocka_unit_test(detect_refuses_bad_phentsize),
        cmocka_unit_test(detect_refuses_offsets_past_2_64),
        cmocka_unit_test(detect_refuses_bad_elf_ident),
        cmocka_unit_test(detect_refuses_bad_solo5_manifest),
        cmocka_unit_test(detect_refuses_short_solo5_abi_note),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
