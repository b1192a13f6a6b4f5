/*
 * Every format detector, through imgstore_store__detect as a push calls it. The first byte
 * picks the file name (the text detectors look at it: "cmdline", "*.xl"), the second adds
 * 64 KiB steps of zeros past the input's end to the file's size, so that a real image's
 * first 64 KiB (the corpus) passes its size checks and the detectors read on into the
 * structures beyond; the rest is the file. Detection must not fail without saying why, and
 * what it fills must be NUL-terminated text a manifest can hold.
 */
#include "fuzz_util.h"
#include "store/store_internal.h"

/* The corpus names its file by index (tests/fuzz/corpus/README.md): append only. */
static const char *const names[] = {
    "app.xen",     "app.hvt",   "app.spt",     "kernel",        "vmlinuz",    "initrd.img",
    "cmdline",     "app.xl",    "disk.iso",    "disk.img",      "disk.qcow2", "disk.vhd",
    "disk.vhdx",   "disk.vmdk", "bootx64.efi", "rootfs.tar.gz", "app.cfg",    "kernel-cmdline.txt",
    "memtest.bin", "data",
};

typedef struct {
    const uint8_t *data;
    size_t len;
    uint64_t size; /* len plus zeros */
} source;

static int read_at(size_t *out_len, void *buf, size_t len, uint64_t offset, void *payload)
{
    const source *src = payload;
    size_t n = 0, from_data = 0;

    if (offset < src->size)
        n = src->size - offset < len ? (size_t)(src->size - offset) : len;
    if (offset < src->len)
        from_data = src->len - offset < n ? (size_t)(src->len - offset) : n;
    memcpy(buf, src->data + offset, from_data);
    memset((uint8_t *)buf + from_data, 0, n - from_data);
    *out_len = n;
    return 0;
}

static void check_text(const char *field, size_t cap)
{
    FUZZ_CHECK(memchr(field, '\0', cap) != NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static imgstore_file_info info; /* ~9 KiB: off the stack */
    source src;
    int err;

    if (size < 2)
        return 0;
    src.data = data + 2;
    src.len = size - 2;
    src.size = src.len + ((uint64_t)data[1] << 16);
    imgstore_error_clear();
    err = imgstore_store__detect(&info, names[data[0] % (sizeof(names) / sizeof(names[0]))],
                                 src.size, read_at, &src);
    FUZZ_CHECK_FAILURE_SAYS_WHY(err);
    FUZZ_CHECK(err == 0 || err == IMGSTORE_EINVALID);
    if (err < 0)
        return 0;
    FUZZ_CHECK(info.kind[0] != '\0' && imgstore_schema_check_kind(info.kind) == 0);
    check_text(info.format, sizeof(info.format));
    check_text(info.arch, sizeof(info.arch));
    check_text(info.solo5_target, sizeof(info.solo5_target));
    check_text(info.xen_mode, sizeof(info.xen_mode));
    check_text(info.kernel_version, sizeof(info.kernel_version));
    check_text(info.volume_id, sizeof(info.volume_id));
    check_text(info.text, sizeof(info.text));
    FUZZ_CHECK(info.device_count <= IMGSTORE_MAX_DEVICES);
    for (uint32_t i = 0; i < info.device_count; i++) {
        check_text(info.devices[i].name, sizeof(info.devices[i].name));
        check_text(info.devices[i].type, sizeof(info.devices[i].type));
    }
    return 0;
}
