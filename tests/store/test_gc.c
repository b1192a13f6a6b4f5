/*
 * Packing (issue #9): imgstore_store_gc puts loose objects into packs that stock git accepts,
 * chunk blobs stored rather than deflated again, and every reader, including one that opened
 * the store before the pack existed, still gets every byte. Also the gc lock, the leftovers
 * of a killed gc, damaged objects, combining packs and the automatic trigger after commits.
 * Concurrency with real processes and kill -9 are in tests/integration/test_gc.py.
 */
#include "store_test_util.h"

#include <fcntl.h>
#include <sys/file.h>

/* Text that deflates well but differs from version to version. */
static uint8_t *compressible(size_t len, uint64_t seed)
{
    uint8_t *buf = malloc(len);

    for (size_t i = 0; i < len; i++)
        buf[i] = (uint8_t)("imgstore packs chunks "[(i + seed) % 22]);
    snprintf((char *)buf, len, "seed %llu", (unsigned long long)seed);
    return buf;
}

static void push_file(imgstore_store *store, const char *version, const char *file,
                      const uint8_t *bytes, size_t len)
{
    imgstore_push_opts opts = {
        .name = "app", .version = version, .actor = "test <t@example>", .signers = {test_keys, 1}};
    imgstore_push *push = NULL;
    imgstore_manifest *m = NULL;
    bool created;

    assert_int_equal(imgstore_store_push_begin(&push, store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(push, file, "unknown", len), 0);
    assert_int_equal(imgstore_store_push_write(push, bytes, len), 0);
    assert_int_equal(imgstore_store_push_file_end(push, NULL), 0);
    assert_int_equal(imgstore_store_push_commit(push, &m, &created), 0);
    imgstore_manifest_free(m);
    imgstore_store_push_free(push);
}

static void assert_reads(imgstore_store *store, const char *version, const char *file,
                         const uint8_t *bytes, size_t len)
{
    imgstore_manifest *m = NULL;
    membuf got = {malloc(len + 1), 0, len + 1};

    assert_int_equal(imgstore_store_manifest_get(&m, NULL, store, "app", version), 0);
    assert_int_equal(imgstore_store_file_read(store, m, file, 0, UINT64_MAX, mem_write, &got), 0);
    assert_int_equal(got.len, len);
    assert_memory_equal(got.buf, bytes, len);
    imgstore_manifest_free(m);
    free(got.buf);
}

static int git_quiet(const fixture *f, const char *args)
{
    char cmd[1200];

    snprintf(cmd, sizeof(cmd), "GIT_CONFIG_NOSYSTEM=1 git --git-dir='%s' %s >/dev/null 2>&1",
             f->path, args);
    return system(cmd);
}

static int git_verify_packs(const fixture *f)
{
    char cmd[1200];

    snprintf(cmd, sizeof(cmd),
             "for i in '%s'/objects/pack/*.idx; do git verify-pack \"$i\" >/dev/null 2>&1 "
             "|| exit 1; done",
             f->path);
    return system(cmd);
}

static uint64_t file_size(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static uint64_t loose_count(const fixture *f)
{
    char cmd[1200];
    FILE *p;
    unsigned long long n = 0;

    snprintf(
        cmd, sizeof(cmd),
        "find '%s/objects' -path '*/pack' -prune -o -type f -regex '.*/[0-9a-f]+' -print | wc -l",
        f->path);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%llu", &n), 1);
    pclose(p);
    return n;
}

static void gc_packs_everything_loose_and_git_accepts_it(void **state)
{
    fixture *f = *state;
    size_t rlen = 3 * 1024 * 1024 + 17, clen = 2 * 1024 * 1024;
    uint8_t *random_bytes = pseudo_random(rlen, 7), *text = compressible(clen, 3);
    imgstore_gc_stats stats;

    push_file(f->store, "1.0", "app.img", random_bytes, rlen);
    push_file(f->store, "1.1", "app.txt", text, clen);
    push_file(f->store, "1.2", "cmdline", (const uint8_t *)"console=ttyS0", 13);
    assert_true(loose_count(f) > 10);
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    assert_false(stats.skipped);
    assert_true(stats.objects_packed > 10);
    assert_int_equal(stats.loose_before, stats.objects_packed);
    assert_int_equal(stats.loose_after, 0);
    assert_int_equal(loose_count(f), 0);
    assert_int_equal(stats.packs_written, 2);
    assert_int_equal(stats.packs, 2);
    assert_int_equal(stats.damaged, 0);
    /* the random chunks are in a pack stored: their bytes plus headers, not deflated to less,
     * and the text chunks deflated: the packs hold less than the two files */
    assert_true(stats.bytes_after >= rlen);
    assert_true(stats.bytes_after < rlen + clen / 4);
    assert_reads(f->store, "1.0", "app.img", random_bytes, rlen);
    assert_reads(f->store, "1.1", "app.txt", text, clen);
    assert_reads(f->store, "1.2", "cmdline", (const uint8_t *)"console=ttyS0", 13);
    assert_int_equal(git_quiet(f, "fsck --strict --no-dangling"), 0);
    assert_int_equal(git_verify_packs(f), 0);
    /* again: nothing loose, nothing to do */
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    assert_int_equal(stats.objects_packed, 0);
    assert_int_equal(stats.packs_written, 0);
    assert_int_equal(stats.packs, 2);
    free(random_bytes);
    free(text);
}

static void handle_opened_before_gc_finds_objects_in_the_new_pack(void **state)
{
    fixture *f = *state;
    size_t len = 2 * 1024 * 1024 + 5;
    uint8_t *bytes = pseudo_random(len, 11);
    imgstore_store *early = NULL;
    imgstore_manifest *m = NULL;
    imgstore_gc_stats stats;

    push_file(f->store, "1.0", "app.img", bytes, len);
    assert_int_equal(imgstore_store_open(&early, f->path), 0);
    assert_reads(early, "1.0", "app.img", bytes, len); /* its odb has seen no pack at all */
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    assert_int_equal(stats.loose_after, 0);
    /* every loose file it read is gone: the loose backend misses, libgit2 rescans the packs */
    assert_reads(early, "1.0", "app.img", bytes, len);
    assert_int_equal(imgstore_store_manifest_get(&m, NULL, early, "app", "1.0"), 0);
    imgstore_manifest_free(m);
    /* and it writes on top of packed objects */
    push_file(early, "1.1", "app.img", bytes, len - 1);
    assert_reads(f->store, "1.1", "app.img", bytes, len - 1);
    imgstore_store_free(early);
    assert_int_equal(git_quiet(f, "fsck --strict --no-dangling"), 0);
    free(bytes);
}

static void second_gc_skips_while_one_runs(void **state)
{
    fixture *f = *state;
    char lock_path[600];
    imgstore_gc_stats stats;
    uint64_t before = loose_count(f);
    int fd;

    snprintf(lock_path, sizeof(lock_path), "%s/imgstore-gc.lock", f->path);
    fd = open(lock_path, O_RDWR | O_CREAT, 0644);
    assert_true(fd >= 0);
    assert_int_equal(flock(fd, LOCK_EX), 0);
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    assert_true(stats.skipped);
    assert_int_equal(loose_count(f), before);
    close(fd);
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    assert_false(stats.skipped);
    assert_int_equal(loose_count(f), 0);
}

static void killed_gc_leftovers_are_cleaned_up(void **state)
{
    fixture *f = *state;
    char path[700];
    imgstore_gc_stats stats;
    FILE *fp;

    /* what a gc killed between renaming the .pack and the .idx leaves, and its staging */
    snprintf(path, sizeof(path), "%s/objects/pack", f->path);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/objects/pack/pack-%040d.pack", f->path, 0);
    assert_non_null(fp = fopen(path, "w"));
    fputs("PACK half", fp);
    fclose(fp);
    snprintf(path, sizeof(path), "%s/imgstore-gc.tmp", f->path);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/imgstore-gc.tmp/tmp_pack_abc", f->path);
    assert_non_null(fp = fopen(path, "w"));
    fclose(fp);
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    snprintf(path, sizeof(path), "%s/objects/pack/pack-%040d.pack", f->path, 0);
    assert_int_equal(access(path, F_OK), -1);
    snprintf(path, sizeof(path), "%s/imgstore-gc.tmp", f->path);
    assert_int_equal(access(path, F_OK), -1);
    assert_int_equal(git_quiet(f, "fsck --strict --no-dangling"), 0);
}

static void damaged_loose_object_is_left_alone(void **state)
{
    fixture *f = *state;
    size_t len = 200 * 1024; /* one chunk: below the chunker's minimum */
    uint8_t *bytes = pseudo_random(len, 5);
    imgstore_manifest *m = NULL;
    imgstore_gc_stats stats;
    git_oid oid;
    char path[700], hex[41];
    int fd;

    push_file(f->store, "1.0", "app.img", bytes, len);
    assert_int_equal(imgstore_store_manifest_get(&m, NULL, f->store, "app", "1.0"), 0);
    /* the chunk blob's id: git's SHA-1 of "blob <len>\0" + bytes */
    assert_int_equal(git_odb_hash(&oid, bytes, len, GIT_OBJECT_BLOB), 0);
    git_oid_tostr(hex, sizeof(hex), &oid);
    snprintf(path, sizeof(path), "%s/objects/%.2s/%s", f->path, hex, hex + 2);
    chmod(path, 0644);
    fd = open(path, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "X", 1, (off_t)(file_size(path) / 2)), 1); /* inside a block */
    close(fd);
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    assert_int_equal(stats.damaged, 1);
    assert_int_equal(stats.loose_after, 1);
    assert_int_equal(access(path, F_OK), 0); /* still there for fsck to name */
    imgstore_manifest_free(m);
    free(bytes);
}

static void gc_all_combines_packs_into_two(void **state)
{
    fixture *f = *state;
    size_t len = 512 * 1024;
    uint8_t *bytes[4];
    imgstore_gc_stats stats;
    imgstore_gc_opts all = {.all = true};
    char version[16];

    for (int i = 0; i < 4; i++) {
        bytes[i] = pseudo_random(len, 100 + (uint64_t)i);
        snprintf(version, sizeof(version), "1.%d", i);
        push_file(f->store, version, "app.img", bytes[i], len);
        assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    }
    assert_int_equal(stats.packs, 8);
    assert_int_equal(imgstore_store_gc(&stats, f->store, &all), 0);
    assert_int_equal(stats.packs_written, 2);
    assert_int_equal(stats.packs_removed, 8);
    assert_int_equal(stats.packs, 2);
    for (int i = 0; i < 4; i++) {
        snprintf(version, sizeof(version), "1.%d", i);
        assert_reads(f->store, version, "app.img", bytes[i], len);
        free(bytes[i]);
    }
    assert_int_equal(git_quiet(f, "fsck --strict --no-dangling"), 0);
    assert_int_equal(git_verify_packs(f), 0);
}

static void commits_pack_automatically_past_the_threshold(void **state)
{
    fixture *f = *state;
    uint8_t *bytes = pseudo_random(300 * 1024, 9);
    imgstore_gc_stats stats;
    bool due = true;
    char version[16];

    setenv("IMGSTORE_GC_AUTO", "0", 1); /* off */
    push_file(f->store, "1.0", "app.img", bytes, 100 * 1024);
    assert_int_equal(imgstore_store_gc_due(&due, f->store), 0);
    assert_false(due);
    assert_true(loose_count(f) > 10);

    setenv("IMGSTORE_GC_AUTO", "20", 1);
    imgstore_store_set_auto_gc(f->store, false); /* the server's handles */
    push_file(f->store, "1.1", "app.img", bytes, 110 * 1024);
    assert_int_equal(imgstore_store_gc_due(&due, f->store), 0);
    assert_true(due);
    assert_true(loose_count(f) > 20);

    imgstore_store_set_auto_gc(f->store, true);
    for (int i = 2; i < 6; i++) { /* each push is a handful of objects */
        snprintf(version, sizeof(version), "1.%d", i);
        push_file(f->store, version, "app.img", bytes, (size_t)(100 + i * 10) * 1024);
        assert_true(loose_count(f) <= 20 + 10);
    }
    assert_int_equal(imgstore_store_gc_due(&due, f->store), 0);
    assert_false(due);
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    assert_true(stats.packs >= 2);
    assert_reads(f->store, "1.0", "app.img", bytes, 100 * 1024);
    assert_reads(f->store, "1.5", "app.img", bytes, 150 * 1024);
    free(bytes);
}

/* Loose object files over 64 KiB: chunk blobs (the random ones are stored, not shrunk). */
static uint64_t loose_chunk_files(const fixture *f)
{
    char cmd[1200];
    FILE *p;
    unsigned long long n = 0;

    snprintf(cmd, sizeof(cmd),
             "find '%s/objects' -path '*/pack' -prune -o -type f -size +64k -print | wc -l",
             f->path);
    p = popen(cmd, "r");
    assert_non_null(p);
    assert_int_equal(fscanf(p, "%llu", &n), 1);
    pclose(p);
    return n;
}

static void push_after_gc_reuses_packed_chunks(void **state)
{
    fixture *f = *state;
    size_t len = 3 * 1024 * 1024;
    uint8_t *bytes = pseudo_random(len, 21);
    imgstore_gc_stats stats;

    push_file(f->store, "1.0", "app.img", bytes, len);
    assert_true(loose_chunk_files(f) >= 2);
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    assert_int_equal(loose_chunk_files(f), 0);
    /* the same bytes again: every chunk is in the pack already, none is written loose */
    push_file(f->store, "1.1", "app.img", bytes, len);
    assert_int_equal(loose_chunk_files(f), 0);
    assert_reads(f->store, "1.1", "app.img", bytes, len);
    free(bytes);
}

/* Set every pack's mtime (with `loose_too`, every object file's) to `age` seconds ago. */
static void age_objects(const fixture *f, time_t age, bool loose_too)
{
    char cmd[1200];

    snprintf(cmd, sizeof(cmd), "find '%s'/objects %s -type f -exec touch -d '@%lld' {} +", f->path,
             loose_too ? "" : "-name '*.pack'", (long long)(time(NULL) - age));
    assert_int_equal(system(cmd), 0);
}

/* Asked of stock git: this process's handle keeps packs gc removed mapped, as readers do. */
static bool object_stored(const fixture *f, const git_oid *oid)
{
    char args[128];

    snprintf(args, sizeof(args), "cat-file -e %s", git_oid_tostr_s(oid));
    return git_quiet(f, args) == 0;
}

/* gc --prune combines packs without what no ref reaches (a prune's cut leaves the pruned
 * versions so): a push in flight that reuses such an object freshens its pack, so a gc
 * --prune between its chunk writes and its commit keeps it; left alone, it goes. */
static void gc_prune_drops_unreachable_packed_objects_but_not_one_a_push_reuses(void **state)
{
    fixture *f = *state;
    static const char reused[] = "a chunk only an abandoned, unreachable commit held";
    imgstore_push_opts opts = {.name = "app", .version = "1", .signers = {test_keys, 1}};
    imgstore_gc_opts gc = {.prune = true, .prune_expire = IMGSTORE_GC_PRUNE_EXPIRE_DEFAULT};
    imgstore_push *p = NULL;
    imgstore_manifest *m = NULL;
    imgstore_gc_stats stats;
    git_oid blob, junk;
    bool made = false;

    assert_int_equal(git_blob_create_from_buffer(&blob, f->store->repo, reused, strlen(reused)), 0);
    assert_int_equal(git_blob_create_from_buffer(&junk, f->store->repo, "junk", 4), 0);
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0); /* both packed */
    age_objects(f, 30 * 86400, false);

    assert_int_equal(imgstore_store_push_begin(&p, f->store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(p, "app.bin", "unknown", 0), 0);
    assert_int_equal(imgstore_store_push_write(p, reused, strlen(reused)), 0);
    assert_int_equal(imgstore_store_push_file_end(p, NULL), 0);
    assert_int_equal(imgstore_store_gc(&stats, f->store, &gc), 0); /* between write and commit */
    assert_true(object_stored(f, &blob));
    assert_int_equal(imgstore_store_push_commit(p, &m, &made), 0);
    imgstore_store_push_free(p);
    imgstore_manifest_free(m);
    assert_int_equal(imgstore_store_verify(f->store, "app", "1", NULL, NULL), 0);
    assert_reads(f->store, "1", "app.bin", (const uint8_t *)reused, strlen(reused));

    /* nothing reuses the junk (that gc made it loose, with its young pack's age): once it is
     * old, it goes */
    age_objects(f, 30 * 86400, true);
    assert_int_equal(imgstore_store_gc(&stats, f->store, &gc), 0);
    assert_true(stats.objects_pruned >= 1);
    assert_false(object_stored(f, &junk));
    assert_true(object_stored(f, &blob));
    assert_int_equal(git_quiet(f, "fsck --strict --no-dangling"), 0);
    assert_int_equal(git_verify_packs(f), 0);
}

/* The race the freshening closes from the other side: a gc --prune that removes the only
 * pack holding a chunk after a push's writers opened their pack set. The removed pack stays
 * mapped and still answers; the push must not count it as storing the chunk, or its commit
 * would name an object the store no longer has. */
/* A tree of 256 entries that 1,000 commits rewrite one entry at a time, as pushes rewrite
 * images/<name> and the index's fan-outs: every version has the same size, so only the path
 * and the order of the commits put each version beside the one before it, where it is a
 * delta of a few bytes. Given in any other order, most pairs the packbuilder compares
 * differ in most entries, and most versions are stored whole. */
static void gc_deltas_a_tree_against_its_previous_version(void **state)
{
    fixture *f = *state;
    git_repository *repo = f->store->repo;
    git_oid entries[256], tree, sub, commit, parent;
    git_signature *sig = NULL;
    imgstore_gc_stats stats;
    imgstore_gc_opts all = {.all = true};
    char name[8], text[48];

    assert_int_equal(git_signature_new(&sig, "test", "t@example", 1700000000, 0), 0);
    for (int i = 0; i < 256; i++) {
        snprintf(text, sizeof(text), "entry %d, first version", i);
        assert_int_equal(git_blob_create_from_buffer(&entries[i], repo, text, strlen(text)), 0);
    }
    for (int c = 0; c < 1000; c++) {
        git_treebuilder *tb = NULL;
        git_tree *root = NULL;
        git_commit *before = NULL;

        snprintf(text, sizeof(text), "entry %d, version %d", c % 256, c);
        assert_int_equal(git_blob_create_from_buffer(&entries[c % 256], repo, text, strlen(text)),
                         0);
        assert_int_equal(git_treebuilder_new(&tb, repo, NULL), 0);
        for (int i = 0; i < 256; i++) {
            snprintf(name, sizeof(name), "%02x", i);
            assert_int_equal(git_treebuilder_insert(NULL, tb, name, &entries[i], GIT_FILEMODE_BLOB),
                             0);
        }
        assert_int_equal(git_treebuilder_write(&sub, tb), 0);
        git_treebuilder_free(tb);
        assert_int_equal(git_treebuilder_new(&tb, repo, NULL), 0);
        assert_int_equal(git_treebuilder_insert(NULL, tb, "app", &sub, GIT_FILEMODE_TREE), 0);
        assert_int_equal(git_treebuilder_write(&tree, tb), 0);
        git_treebuilder_free(tb);
        assert_int_equal(git_tree_lookup(&root, repo, &tree), 0);
        if (c > 0)
            assert_int_equal(git_commit_lookup(&before, repo, &parent), 0);
        assert_int_equal(git_commit_create_v(&commit, repo, "refs/test/one-tree", sig, sig, NULL,
                                             "rewrite one entry", root, c > 0 ? 1 : 0, before),
                         0);
        parent = commit;
        git_commit_free(before);
        git_tree_free(root);
        if (c == 333 || c == 666) /* packed as a gc after pushes does: what is loose */
            assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    }
    git_signature_free(sig);
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0);
    assert_int_equal(stats.loose_after, 0);
    assert_int_equal(stats.packs, 3); /* no chunks: one pack each */
    /* 1,000 versions of a 7.7 KB tree: about 6 MB stored whole; as deltas of one entry each,
     * a few hundred KB with the commits, the blobs and the store's own objects */
    assert_true(stats.bytes_after < 1024 * 1024);
    /* and combined, from a walk of the whole history */
    assert_int_equal(imgstore_store_gc(&stats, f->store, &all), 0);
    assert_int_equal(stats.packs_removed, 3);
    assert_int_equal(stats.packs, 1);
    assert_true(stats.bytes_after < 1024 * 1024);
    assert_int_equal(git_quiet(f, "fsck --strict --no-dangling"), 0);
    assert_int_equal(git_verify_packs(f), 0);
}

static void push_rewrites_a_chunk_whose_pack_gc_removed_under_it(void **state)
{
    fixture *f = *state;
    static const char reused[] = "a chunk whose only pack goes while a push is under way";
    imgstore_push_opts opts = {.name = "app", .version = "1", .signers = {test_keys, 1}};
    imgstore_gc_opts gc = {.prune = true, .prune_expire = IMGSTORE_GC_PRUNE_EXPIRE_DEFAULT};
    imgstore_push *p = NULL;
    imgstore_manifest *m = NULL;
    imgstore_gc_stats stats;
    git_oid blob;
    bool made = false;

    assert_int_equal(git_blob_create_from_buffer(&blob, f->store->repo, reused, strlen(reused)), 0);
    assert_int_equal(imgstore_store_gc(&stats, f->store, NULL), 0); /* packed, unreachable */
    age_objects(f, 30 * 86400, false);

    assert_int_equal(imgstore_store_push_begin(&p, f->store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(p, "app.bin", "unknown", 0), 0);
    assert_int_equal(imgstore_store_gc(&stats, f->store, &gc), 0); /* the old pack goes */
    assert_true(stats.objects_pruned >= 1);
    assert_false(object_stored(f, &blob));
    assert_int_equal(imgstore_store_push_write(p, reused, strlen(reused)), 0);
    assert_int_equal(imgstore_store_push_file_end(p, NULL), 0);
    assert_int_equal(imgstore_store_push_commit(p, &m, &made), 0);
    imgstore_store_push_free(p);
    imgstore_manifest_free(m);
    assert_true(object_stored(f, &blob));
    assert_int_equal(git_quiet(f, "fsck --strict --no-dangling"), 0);
    assert_reads(f->store, "1", "app.bin", (const uint8_t *)reused, strlen(reused));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(gc_packs_everything_loose_and_git_accepts_it, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(handle_opened_before_gc_finds_objects_in_the_new_pack,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(second_gc_skips_while_one_runs, setup, teardown),
        cmocka_unit_test_setup_teardown(killed_gc_leftovers_are_cleaned_up, setup, teardown),
        cmocka_unit_test_setup_teardown(damaged_loose_object_is_left_alone, setup, teardown),
        cmocka_unit_test_setup_teardown(gc_all_combines_packs_into_two, setup, teardown),
        cmocka_unit_test_setup_teardown(commits_pack_automatically_past_the_threshold, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(push_after_gc_reuses_packed_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(
            gc_prune_drops_unreachable_packed_objects_but_not_one_a_push_reuses, setup, teardown),
        cmocka_unit_test_setup_teardown(gc_deltas_a_tree_against_its_previous_version, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(push_rewrites_a_chunk_whose_pack_gc_removed_under_it, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
