/*
 * Where versions live (store/layout.c, docs/format.md "Tree layout"): a new store is
 * imgstore/2 with images/<name>/<xx>/<version>, a store an older imgstore made (imgstore/1)
 * keeps images/<name>/<version> for reads and writes, the one iterator walks every shard, and
 * fsck refuses a version in the wrong shard, a shard that is not a directory and a shard
 * name that is not two lowercase hex digits. Paths are checked with git lookups, not only
 * through the store's API.
 */
#include "store_test_util.h"

static void push(fixture *f, const char *version, char fill)
{
    push_filled(f, version, fill, 3000);
}

/* Whether `spec` ("main:<path>") names an object, and of which type. */
static git_object_t object_at(fixture *f, const char *spec)
{
    git_object *object = NULL;
    git_object_t type;

    if (git_revparse_single(&object, f->store->repo, spec) < 0) {
        git_error_clear();
        return GIT_OBJECT_INVALID;
    }
    type = git_object_type(object);
    git_object_free(object);
    return type;
}

static void marker_is(fixture *f, const char *want)
{
    git_object *blob = NULL;

    assert_int_equal(git_revparse_single(&blob, f->store->repo, "main:imgstore.json"), 0);
    assert_int_equal(git_blob_rawsize((git_blob *)blob), strlen(want));
    assert_memory_equal(git_blob_rawcontent((git_blob *)blob), want, strlen(want));
    git_object_free(blob);
}

/* shards worked out by hand: printf %s 1.0 | sha256sum | cut -c1-2 */
static void new_store_writes_imgstore_2_and_sharded_paths(void **state)
{
    fixture *f = *state;
    imgstore_manifest *m = NULL;
    char shard[3], path[600];

    marker_is(f, "{\"format\":\"imgstore/2\"}");
    assert_int_equal(f->store->layout, IMGSTORE_STORE__SHARDED);
    push(f, "1.0", 'a');
    push(f, "2.0", 'b');
    assert_int_equal(object_at(f, "main:images/app/d0/1.0/manifest.json"), GIT_OBJECT_BLOB);
    assert_int_equal(object_at(f, "main:images/app/d0/1.0/files/app.img"), GIT_OBJECT_TREE);
    assert_int_equal(object_at(f, "main:images/app/d8/2.0/manifest.json"), GIT_OBJECT_BLOB);
    assert_int_equal(object_at(f, "main:images/app/1.0"), GIT_OBJECT_INVALID);
    imgstore_store__version_shard(shard, "1.0");
    assert_string_equal(shard, "d0");
    imgstore_store__version_path(path, sizeof(path), f->store, "app", "2.0", "manifest.json");
    assert_string_equal(path, "images/app/d8/2.0/manifest.json");

    /* a new handle reads the layout from the marker */
    imgstore_store_free(f->store);
    assert_int_equal(imgstore_store_open(&f->store, f->path), 0);
    assert_int_equal(f->store->layout, IMGSTORE_STORE__SHARDED);
    assert_int_equal(imgstore_store_manifest_get(&m, NULL, f->store, "app", "1.0"), 0);
    assert_string_equal(m->version, "1.0");
    imgstore_manifest_free(m);
    assert_int_equal(imgstore_store_fsck(f->store, NULL, NULL), 0);
}

static void imgstore_1_store_is_read_and_written_flat(void **state)
{
    fixture *f = *state;
    imgstore_prune_opts opts = {.name = "app", .keep = 1, .now = 4000000000LL};
    imgstore_signers signers = TEST_SIGNERS;
    imgstore_prune_plan *plan = NULL;
    imgstore_version_row *rows = NULL;
    imgstore_manifest *m = NULL;
    char **names = NULL;
    size_t count = 0;
    bool more = false;

    marker_is(f, "{\"format\":\"imgstore/1\"}");
    push(f, "1.0", 'a');
    push(f, "1.1", 'b');
    assert_int_equal(object_at(f, "main:images/app/1.0/manifest.json"), GIT_OBJECT_BLOB);
    assert_int_equal(object_at(f, "main:images/app/1.1/files/app.img"), GIT_OBJECT_TREE);
    assert_int_equal(object_at(f, "main:images/app/d0"), GIT_OBJECT_INVALID);

    imgstore_store_free(f->store);
    assert_int_equal(imgstore_store_open(&f->store, f->path), 0);
    assert_int_equal(f->store->layout, IMGSTORE_STORE__FLAT);
    assert_int_equal(imgstore_store_manifest_get(&m, NULL, f->store, "app", "1.1"), 0);
    imgstore_manifest_free(m);
    assert_int_equal(
        imgstore_store_versions_page(&rows, &count, NULL, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(count, 2);
    imgstore_version_rows_free(rows, count);
    assert_int_equal(imgstore_store_version_names(&names, &count, &more, f->store, "app", NULL, 10),
                     0);
    assert_int_equal(count, 2);
    assert_string_equal(names[0], "1.0");
    imgstore_strings_free(names, count);
    assert_int_equal(imgstore_store_fsck(f->store, NULL, NULL), 0);

    assert_int_equal(imgstore_store_prune(&plan, f->store, &opts, &signers, "test"), 0);
    assert_int_equal(plan->removed_count, 1);
    imgstore_prune_plan_free(plan);
    assert_int_equal(object_at(f, "main:images/app/1.0"), GIT_OBJECT_INVALID);
    assert_int_equal(object_at(f, "main:images/app/1.1/manifest.json"), GIT_OBJECT_BLOB);
    marker_is(f, "{\"format\":\"imgstore/1\"}");
    assert_int_equal(imgstore_store_fsck(f->store, NULL, NULL), 0);
}

static int count_version(const char *version, const git_tree_entry *entry, void *payload)
{
    (void)version;
    assert_int_equal(git_tree_entry_type(entry), GIT_OBJECT_TREE);
    ++*(size_t *)payload;
    return 0;
}

static void iterator_lists_exactly_the_versions_across_shards(void **state)
{
    fixture *f = *state;
    imgstore_prune_opts opts = {.name = "app", .keep = 3, .now = 4000000000LL};
    imgstore_signers signers = TEST_SIGNERS;
    imgstore_prune_plan *plan = NULL;
    imgstore_version_row *rows = NULL;
    git_object *image = NULL;
    git_tree *tip = NULL;
    char **names = NULL, version[8];
    size_t count = 0, walked = 0, total = 0;
    bool more = false;

    for (int i = 1; i <= 12; i++) {
        snprintf(version, sizeof(version), "%d", i);
        push(f, version, (char)('a' + i));
    }
    assert_int_equal(git_revparse_single(&image, f->store->repo, "main:images/app"), 0);
    assert_true(git_tree_entrycount((git_tree *)image) > 1); /* several shards */
    git_object_free(image);

    assert_int_equal(imgstore_store__tip_tree(&tip, f->store), 0);
    assert_int_equal(imgstore_store__versions_foreach(f->store, tip, f->store->layout, "app",
                                                      count_version, NULL, &walked),
                     0);
    assert_int_equal(walked, 12);
    /* git's tree order, as a flat images/app lists them */
    assert_int_equal(imgstore_store__versions_list(&names, &count, f->store, tip, "app"), 0);
    assert_int_equal(count, 12);
    assert_string_equal(names[0], "1");
    assert_string_equal(names[1], "10");
    assert_string_equal(names[4], "2");
    assert_string_equal(names[11], "9");
    imgstore_strings_free(names, count);
    git_tree_free(tip);

    assert_int_equal(
        imgstore_store_versions_page(&rows, &count, &total, f->store, "app", SIZE_MAX, 5), 0);
    assert_int_equal(count, 5);
    assert_int_equal(total, 12);
    imgstore_version_rows_free(rows, count);
    /* every version once, whatever second each was created in */
    assert_int_equal(
        imgstore_store_versions_page(&rows, &count, &total, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(count, 12);
    for (size_t i = 0; i < count; i++)
        for (size_t k = i + 1; k < count; k++)
            assert_string_not_equal(rows[i].version, rows[k].version);
    imgstore_version_rows_free(rows, count);
    assert_int_equal(imgstore_store_version_names(&names, &count, &more, f->store, "app", "5", 100),
                     0);
    assert_int_equal(count, 4); /* 6 7 8 9 */
    assert_string_equal(names[0], "6");
    imgstore_strings_free(names, count);

    assert_int_equal(imgstore_store_prune(&plan, f->store, &opts, &signers, "test"), 0);
    assert_int_equal(plan->removed_count, 9);
    imgstore_prune_plan_free(plan);
    assert_int_equal(object_at(f, "main:images/app/6b/1"), GIT_OBJECT_INVALID);
    assert_int_equal(imgstore_store_fsck(f->store, NULL, NULL), 0);
    assert_int_equal(
        imgstore_store_versions_page(&rows, &count, &total, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(count, 3);
    imgstore_version_rows_free(rows, count);
}

/* A commit that places trees by hand, as a buggy or foreign writer would. */
typedef struct {
    imgstore_store *store;
    const char *from; /* moved away (NULL: none) */
    const char *to;
    bool blob; /* `to` gets a blob instead */
} misplace;

static int misplace_edit(git_oid *tree_out, char **message_out, git_tree *tip, void *payload)
{
    misplace *e = payload;
    git_oid id;

    git_oid_cpy(tree_out, git_tree_id(tip));
    if (e->blob) {
        assert_int_equal(imgstore_store__write_blob(&id, e->store, "x", 1), 0);
    } else {
        id = imgstore_store__id_at(tip, e->from);
        assert_false(git_oid_is_zero(&id));
        assert_int_equal(imgstore_store__tree_set(tree_out, e->store, e->from, NULL, 0), 0);
    }
    assert_int_equal(imgstore_store__tree_set(tree_out, e->store, e->to, &id,
                                              e->blob ? GIT_FILEMODE_BLOB : GIT_FILEMODE_TREE),
                     0);
    *message_out = strdup("push app by hand\n");
    return 0;
}

typedef struct {
    char messages[8][600];
    size_t count;
} reported;

static void collect_problem(const imgstore_verify_result *r, void *payload)
{
    reported *rep = payload;

    if (r->status != 0 && rep->count < 8)
        snprintf(rep->messages[rep->count++], 600, "%s", r->message);
}

static bool reported_has(const reported *rep, const char *a, const char *b)
{
    for (size_t i = 0; i < rep->count; i++)
        if (strstr(rep->messages[i], a) && strstr(rep->messages[i], b) &&
            !strchr(rep->messages[i], '\n'))
            return true;
    return false;
}

static void fsck_refuses_misplaced_versions_and_bad_shards(void **state)
{
    fixture *f = *state;
    misplace wrong = {f->store, "images/app/d0/1.0", "images/app/aa/1.0", false};
    misplace upper = {f->store, "images/app/d8/2.0", "images/app/D8/2.0", false};
    misplace blob = {f->store, NULL, "images/app/ab", true};
    reported rep = {0};

    push(f, "1.0", 'a');
    push(f, "2.0", 'b');
    push(f, "3.0", 'c');
    assert_int_equal(imgstore_store_fsck(f->store, collect_problem, &rep), 0);
    assert_int_equal(rep.count, 0);
    assert_int_equal(imgstore_store__commit(f->store, "test", test_key, misplace_edit, &wrong), 0);
    assert_int_equal(imgstore_store_fsck(f->store, collect_problem, &rep), IMGSTORE_EVERIFY);
    assert_true(reported_has(&rep, "images/app/aa/1.0", "wrong shard"));

    assert_int_equal(imgstore_store__commit(f->store, "test", test_key, misplace_edit, &upper), 0);
    assert_int_equal(imgstore_store__commit(f->store, "test", test_key, misplace_edit, &blob), 0);
    memset(&rep, 0, sizeof(rep));
    assert_int_equal(imgstore_store_fsck(f->store, collect_problem, &rep), IMGSTORE_EVERIFY);
    assert_true(reported_has(&rep, "images/app/D8", "two lowercase hex digits"));
    assert_true(reported_has(&rep, "images/app/ab", "not a directory"));
    assert_true(reported_has(&rep, "images/app/aa/1.0", "wrong shard"));
}

/* A commit by stock git that removes a version: the version index of an imgstore/2 store
 * (whose count stands for the image's) is no longer current, and readers answer from the
 * manifests instead of refusing its row for the removed version. */
static void a_commit_by_stock_git_leaves_readers_on_the_manifests(void **state)
{
    fixture *f = *state;
    imgstore_version_row *rows = NULL;
    git_commit *tip = NULL;
    git_tree *tree = NULL;
    git_signature *sig = NULL;
    git_oid head, id, tree_id;
    char **names = NULL;
    size_t count = 0, total = 0;
    bool more = false;

    push(f, "1.0", 'a');
    push(f, "2.0", 'b');
    assert_int_equal(git_reference_name_to_id(&head, f->store->repo, IMGSTORE_STORE_REF), 0);
    assert_int_equal(git_commit_lookup(&tip, f->store->repo, &head), 0);
    assert_int_equal(git_commit_tree(&tree, tip), 0);
    assert_int_equal(
        imgstore_store__tree_update(&tree_id, f->store->repo, tree, "images/app/d0/1.0", NULL, 0),
        0);
    git_tree_free(tree);
    assert_int_equal(git_tree_lookup(&tree, f->store->repo, &tree_id), 0);
    assert_int_equal(git_signature_now(&sig, "git", "git@example"), 0);
    assert_int_equal(git_commit_create_v(&id, f->store->repo, IMGSTORE_STORE_REF, sig, sig, NULL,
                                         "git rm -r images/app/d0/1.0", tree, 1, tip),
                     0);
    assert_int_equal(
        imgstore_store_versions_page(&rows, &count, &total, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(count, 1);
    assert_int_equal(total, 1);
    assert_string_equal(rows[0].version, "2.0");
    imgstore_version_rows_free(rows, count);
    assert_int_equal(imgstore_store_version_names(&names, &count, &more, f->store, "app", NULL, 10),
                     0);
    assert_int_equal(count, 1);
    assert_string_equal(names[0], "2.0");
    imgstore_strings_free(names, count);
    git_signature_free(sig);
    git_tree_free(tree);
    git_commit_free(tip);
}

/* A version log damaged in place (a rewrite of the tip that keeps its parent, so the
 * indexes still look current): the next push drops it, and the pushes after it do not begin
 * it again with only their own rows, which readers would take for the image's whole count;
 * the manifests answer until reindex rebuilds it. */
static void a_dropped_version_log_is_not_begun_again_by_a_later_push(void **state)
{
    fixture *f = *state;
    imgstore_version_row *rows = NULL;
    git_treebuilder *empty = NULL;
    git_reference *ref = NULL;
    git_commit *tip = NULL, *parent = NULL;
    git_tree *tree = NULL;
    git_signature *sig = NULL;
    git_oid head, id, tree_id, empty_id;
    size_t count = 0, total = 0;

    push(f, "1.0", 'a');
    push(f, "2.0", 'b');
    push(f, "3.0", 'c');
    assert_int_equal(git_reference_name_to_id(&head, f->store->repo, IMGSTORE_STORE_REF), 0);
    assert_int_equal(git_commit_lookup(&tip, f->store->repo, &head), 0);
    assert_int_equal(git_commit_parent(&parent, tip, 0), 0);
    assert_int_equal(git_commit_tree(&tree, tip), 0);
    assert_int_equal(git_treebuilder_new(&empty, f->store->repo, NULL), 0);
    assert_int_equal(git_treebuilder_write(&empty_id, empty), 0);
    assert_int_equal(imgstore_store__tree_update(&tree_id, f->store->repo, tree,
                                                 "index/app/versions", &empty_id,
                                                 GIT_FILEMODE_TREE),
                     0);
    git_tree_free(tree);
    assert_int_equal(git_tree_lookup(&tree, f->store->repo, &tree_id), 0);
    assert_int_equal(git_signature_now(&sig, "git", "git@example"), 0);
    assert_int_equal(git_commit_create_v(&id, f->store->repo, NULL, sig, sig, NULL, "push app 3.0",
                                         tree, 1, parent),
                     0);
    assert_int_equal(
        git_reference_create(&ref, f->store->repo, IMGSTORE_STORE_REF, &id, 1, "amend"), 0);
    git_reference_free(ref);
    push(f, "4.0", 'd');
    push(f, "5.0", 'e');
    push(f, "6.0", 'f');
    assert_int_equal(
        imgstore_store_versions_page(&rows, &count, &total, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(total, 6);
    assert_int_equal(count, 6);
    imgstore_version_rows_free(rows, count);
    assert_int_equal(imgstore_store_reindex(NULL, f->store, "test", test_key), 0);
    assert_int_equal(
        imgstore_store_versions_page(&rows, &count, &total, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(total, 6);
    assert_string_equal(rows[0].version, "6.0");
    imgstore_version_rows_free(rows, count);
    git_treebuilder_free(empty);
    git_signature_free(sig);
    git_tree_free(tree);
    git_commit_free(parent);
    git_commit_free(tip);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(new_store_writes_imgstore_2_and_sharded_paths, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(imgstore_1_store_is_read_and_written_flat, setup_flat,
                                        teardown),
        cmocka_unit_test_setup_teardown(iterator_lists_exactly_the_versions_across_shards, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(fsck_refuses_misplaced_versions_and_bad_shards, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(a_commit_by_stock_git_leaves_readers_on_the_manifests,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(a_dropped_version_log_is_not_begun_again_by_a_later_push,
                                        setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
