/*
 * The name index (store/names.c): a two-level B-tree of sorted segments that must hold
 * exactly the stored version names in bytewise order after any inserts (at either end or in
 * the middle, splitting segments and groups) and removals, agree with a rebuild (fsck), and
 * page the OCI tag list in lexical order (distribution spec, "Listing Tags").
 */
#include "store_test_util.h"

static uint32_t next_random(fixture *f, uint32_t below)
{
    f->rng = f->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(f->rng >> 33) % below;
}

/* Versions are created a minute apart, in the order pushed. */
static void push(fixture *f, const char *name, const char *version)
{
    static int64_t created = 1700000000;
    imgstore_push_opts opts = {.name = name,
                               .version = version,
                               .actor = "test <t@example>",
                               .created = created += 60,
                               .signers = {test_keys, 1}};
    imgstore_push *p = NULL;
    imgstore_manifest *m = NULL;
    bool made = false;

    assert_int_equal(imgstore_store_push_begin(&p, f->store, &opts), 0);
    assert_int_equal(imgstore_store_push_file_begin(p, "app.bin", "unknown", 0), 0);
    assert_int_equal(imgstore_store_push_write(p, version, strlen(version)), 0);
    assert_int_equal(imgstore_store_push_file_end(p, NULL), 0);
    assert_int_equal(imgstore_store_push_commit(p, &m, &made), 0);
    imgstore_manifest_free(m);
    imgstore_store_push_free(p);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of `tree`'s index at "n" are `expect[0..count)` (sorted), and every segment and
 * group holds at most `cap` entries; returns how many groups there are. */
static size_t check_index(fixture *f, const git_oid *tree, char **expect, size_t count, size_t cap)
{
    git_tree *root = NULL, *top = NULL;
    char **names = NULL;
    size_t n = 0, groups;

    assert_int_equal(git_tree_lookup(&root, f->store->repo, tree), 0);
    assert_int_equal(imgstore_store__names_all(&names, &n, f->store, root, "n"), 0);
    assert_int_equal(n, count);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(names[i], expect[i]);
    imgstore_strings_free(names, n);
    if (count == 0) {
        git_oid none = imgstore_store__id_at(root, "n");

        assert_true(git_oid_iszero(&none)); /* the last name took the index with it */
        git_tree_free(root);
        return 0;
    }
    git_oid top_id = imgstore_store__id_at(root, "n");
    assert_int_equal(git_tree_lookup(&top, f->store->repo, &top_id), 0);
    groups = git_tree_entrycount(top);
    for (size_t g = 0; g < groups; g++) {
        git_tree *group = NULL;

        assert_int_equal(git_tree_lookup(&group, f->store->repo,
                                         git_tree_entry_id(git_tree_entry_byindex(top, g))),
                         0);
        assert_in_range(git_tree_entrycount(group), 1, cap);
        for (size_t s = 0; s < git_tree_entrycount(group); s++) {
            git_blob *blob = NULL;
            size_t lines = 0;

            assert_int_equal(git_blob_lookup(&blob, f->store->repo,
                                             git_tree_entry_id(git_tree_entry_byindex(group, s))),
                             0);
            for (size_t i = 0; i < (size_t)git_blob_rawsize(blob); i++)
                lines += ((const char *)git_blob_rawcontent(blob))[i] == '\n';
            assert_in_range(lines, 1, cap);
            git_blob_free(blob);
        }
        git_tree_free(group);
    }
    git_tree_free(top);
    git_tree_free(root);
    return groups;
}

static void names_stay_sorted_through_inserts_splits_and_removals(void **state)
{
    fixture *f = *state;
    enum { COUNT = 300 };
    char *all[COUNT], *sorted[COUNT], *gone[COUNT];
    git_treebuilder *bld = NULL;
    git_oid tree;
    size_t kept = 0, groups = 0;

    imgstore_store__names_set_caps(4, 4);
    for (size_t i = 0; i < COUNT; i++) {
        char name[32];

        /* 1.9 before 1.10 by creation, after it bytewise; some share prefixes */
        snprintf(name, sizeof(name), "%zu.%zu%s", i % 13, i, i % 7 ? "" : "+b");
        all[i] = strdup(name);
    }
    for (size_t i = COUNT - 1; i > 0; i--) { /* inserted in a random order */
        size_t j = next_random(f, (uint32_t)i + 1);
        char *t = all[i];

        all[i] = all[j];
        all[j] = t;
    }
    assert_int_equal(git_treebuilder_new(&bld, f->store->repo, NULL), 0);
    assert_int_equal(git_treebuilder_write(&tree, bld), 0);
    git_treebuilder_free(bld);
    for (size_t i = 0; i < COUNT; i++) {
        assert_int_equal(imgstore_store__names_edit(&tree, f->store, "n", &all[i], 1, NULL, 0), 0);
        sorted[kept++] = all[i];
        qsort(sorted, kept, sizeof(*sorted), cmp_names);
        groups = check_index(f, &tree, sorted, kept, 4);
    }
    assert_true(groups > 4); /* segments and groups were split */
    /* again: nothing changes */
    assert_int_equal(imgstore_store__names_edit(&tree, f->store, "n", &all[0], 1, NULL, 0), 0);
    check_index(f, &tree, sorted, kept, 4);
    /* removals in batches (a prune), taking first names of segments and whole segments */
    for (int round = 0; round < 3; round++) {
        size_t n = 0, left = 0;

        for (size_t i = 0; i < kept; i++) {
            if (next_random(f, 2) == 0)
                gone[n++] = sorted[i];
            else
                sorted[left++] = sorted[i];
        }
        kept = left;
        assert_int_equal(imgstore_store__names_edit(&tree, f->store, "n", NULL, 0, gone, n), 0);
        check_index(f, &tree, sorted, kept, 4);
    }
    assert_int_equal(imgstore_store__names_edit(&tree, f->store, "n", NULL, 0, sorted, kept), 0);
    check_index(f, &tree, NULL, 0, 4);
    imgstore_store__names_set_caps(0, 0);
    for (size_t i = 0; i < COUNT; i++)
        free(all[i]);
}

/* Pages of `limit` chained by their last name: the whole list, bytewise. */
static void check_pages(fixture *f, const char *const *expect, size_t count, size_t limit)
{
    char *last = NULL;
    size_t seen = 0;

    for (bool more = true; more;) {
        char **names = NULL;
        size_t n = 0;

        assert_int_equal(
            imgstore_store_version_names(&names, &n, &more, f->store, "app", last, limit), 0);
        assert_true(n <= limit);
        for (size_t i = 0; i < n; i++)
            assert_string_equal(names[i], expect[seen++]);
        free(last);
        last = n ? strdup(names[n - 1]) : NULL;
        imgstore_strings_free(names, n);
        assert_true(more ? n == limit : true);
    }
    free(last);
    assert_int_equal(seen, count);
}

/* ls --sort name: pages of `limit` rows chained by their last version, the whole list in
 * bytewise order, each row what the version index says of that version (time order). */
static void check_row_pages(fixture *f, const char *const *expect, size_t count, size_t limit)
{
    imgstore_version_row *by_time = NULL;
    size_t time_count = 0, total = 0, seen = 0;
    char *last = NULL;

    assert_int_equal(
        imgstore_store_versions_page(&by_time, &time_count, NULL, f->store, "app", SIZE_MAX, 0), 0);
    assert_int_equal(time_count, count);
    for (bool more = true; more;) {
        imgstore_version_row *rows = NULL;
        size_t n = 0;

        assert_int_equal(
            imgstore_store_versions_by_name(&rows, &n, &total, &more, f->store, "app", last, limit),
            0);
        assert_int_equal(total, count);
        assert_true(n <= limit);
        assert_true(more ? n == limit : true);
        for (size_t i = 0; i < n; i++, seen++) {
            const imgstore_version_row *same = NULL;

            assert_string_equal(rows[i].version, expect[seen]);
            assert_int_equal(rows[i].row, SIZE_MAX);
            for (size_t t = 0; t < time_count; t++)
                if (strcmp(by_time[t].version, rows[i].version) == 0)
                    same = &by_time[t];
            assert_non_null(same);
            assert_string_equal(rows[i].created, same->created);
            assert_int_equal(rows[i].files, same->files);
            assert_int_equal(rows[i].size, same->size);
        }
        free(last);
        last = n ? strdup(rows[n - 1].version) : NULL;
        imgstore_version_rows_free(rows, n);
    }
    free(last);
    assert_int_equal(seen, count);
    imgstore_version_rows_free(by_time, time_count);
}

static void version_rows_page_by_name_across_segments(void **state)
{
    fixture *f = *state;
    static const char *const pushed[] = {"1.10", "2.0", "1.9", "1.0+b", "10.0", "1.0", "1.1.1"};
    static const char *const lexical[] = {"1.0", "1.0+b", "1.1.1", "1.10", "1.9", "10.0", "2.0"};
    imgstore_version_row *rows = NULL;
    size_t n = 0, total = 0;
    bool more = false;

    imgstore_store__names_set_caps(2, 2); /* segments of 1 or 2 names: every page crosses one */
    for (size_t i = 0; i < sizeof(pushed) / sizeof(*pushed); i++)
        push(f, "app", pushed[i]);
    for (size_t limit = 1; limit <= 8; limit++)
        check_row_pages(f, lexical, 7, limit);
    /* 0: every row; `after` need not be a version */
    assert_int_equal(
        imgstore_store_versions_by_name(&rows, &n, &total, &more, f->store, "app", NULL, 0), 0);
    assert_int_equal(n, 7);
    assert_false(more);
    imgstore_version_rows_free(rows, n);
    assert_int_equal(
        imgstore_store_versions_by_name(&rows, &n, NULL, &more, f->store, "app", "1.5", 1), 0);
    assert_int_equal(n, 1);
    assert_string_equal(rows[0].version, "1.9");
    assert_true(more);
    imgstore_version_rows_free(rows, n);
    assert_int_equal(
        imgstore_store_versions_by_name(&rows, &n, NULL, &more, f->store, "app", "2.0", 5), 0);
    assert_int_equal(n, 0);
    assert_false(more);
    imgstore_version_rows_free(rows, n);
    assert_int_equal(
        imgstore_store_versions_by_name(&rows, &n, &total, &more, f->store, "nosuch", NULL, 2),
        IMGSTORE_ENOTFOUND);
    assert_int_equal(
        imgstore_store_versions_by_name(&rows, &n, &total, &more, f->store, "Bad/name", NULL, 2),
        IMGSTORE_EINVALID);
    imgstore_store__names_set_caps(0, 0);
}

static void tag_pages_are_lexical_through_push_prune_and_reindex(void **state)
{
    fixture *f = *state;
    static const char *const pushed[] = {"1.0", "1.9", "1.10", "2.0", "1.2", "10.0", "1.1.1"};
    static const char *const lexical[] = {"1.0", "1.1.1", "1.10", "1.2", "1.9", "10.0", "2.0"};
    static const char *const after_prune[] = {"1.1.1", "1.2", "10.0"};
    const imgstore_signers signers = {test_keys, 1};
    imgstore_prune_plan *plan = NULL;
    imgstore_prune_opts opts = {.name = "app", .keep = 3};
    char **names = NULL;
    size_t n = 0;
    bool more = false, changed = false;

    imgstore_store__names_set_caps(2, 2);
    for (size_t i = 0; i < sizeof(pushed) / sizeof(*pushed); i++) {
        push(f, "app", pushed[i]);
        if (imgstore_store_index_check(f->store) != 0)
            fail_msg("after %s: %s", pushed[i], imgstore_error_last());
    }
    for (size_t limit = 1; limit <= 8; limit++)
        check_pages(f, lexical, 7, limit);
    /* `last` need not be a tag: the names after it */
    assert_int_equal(imgstore_store_version_names(&names, &n, &more, f->store, "app", "1.5", 2), 0);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "1.9");
    assert_true(more);
    imgstore_strings_free(names, n);
    assert_int_equal(imgstore_store_version_names(&names, &n, &more, f->store, "nosuch", NULL, 2),
                     IMGSTORE_ENOTFOUND);
    /* prune keeps the newest 3 (the last pushed): names leave the index in one commit */
    assert_int_equal(imgstore_store_prune(&plan, f->store, &opts, &signers, "test"), 0);
    imgstore_prune_plan_free(plan);
    if (imgstore_store_index_check(f->store) != 0)
        fail_msg("after the prune: %s", imgstore_error_last());
    check_pages(f, after_prune, 3, 2);
    imgstore_store__names_set_caps(0, 0);
    assert_int_equal(imgstore_store_reindex(&changed, f->store, "test", test_key), 0);
    assert_false(changed); /* the layout differs from a rebuild's; what it holds does not */
}

/* A segment is derived data and trusted for nothing: a NUL inside one (damage, or a forged
 * replica object) is refused as damage, never read past. */
static void a_segment_with_a_nul_is_refused_as_damage(void **state)
{
    fixture *f = *state;
    static const char bad[] = "1.0\0x\n";
    git_oid head, blob, tree_oid, group_id;
    git_commit *tip = NULL;
    git_tree *tree = NULL, *names = NULL, *group = NULL;
    char path[512], **got = NULL;
    size_t n = 0;

    push(f, "app", "1.0");
    assert_int_equal(git_reference_name_to_id(&head, f->store->repo, IMGSTORE_STORE_REF), 0);
    assert_int_equal(git_commit_lookup(&tip, f->store->repo, &head), 0);
    assert_int_equal(git_commit_tree(&tree, tip), 0);
    group_id = imgstore_store__id_at(tree, "index/app/names");
    assert_int_equal(git_tree_lookup(&names, f->store->repo, &group_id), 0);
    group_id = *git_tree_entry_id(git_tree_entry_byindex(names, 0));
    assert_int_equal(git_tree_lookup(&group, f->store->repo, &group_id), 0);
    snprintf(path, sizeof(path), "index/app/names/%s/%s",
             git_tree_entry_name(git_tree_entry_byindex(names, 0)),
             git_tree_entry_name(git_tree_entry_byindex(group, 0)));
    assert_int_equal(git_blob_create_from_buffer(&blob, f->store->repo, bad, sizeof(bad) - 1), 0);
    tree_oid = *git_tree_id(tree);
    assert_int_equal(imgstore_store__tree_set(&tree_oid, f->store, path, &blob, 0100644), 0);
    git_tree_free(tree);
    assert_int_equal(git_tree_lookup(&tree, f->store->repo, &tree_oid), 0);
    assert_int_equal(imgstore_store__names_all(&got, &n, f->store, tree, "index/app/names"),
                     IMGSTORE_EVERIFY);
    assert_non_null(strstr(imgstore_error_last(), "damaged"));
    git_tree_free(group);
    git_tree_free(names);
    git_tree_free(tree);
    git_commit_free(tip);
}

static void a_store_without_the_name_index_sorts_until_reindex(void **state)
{
    fixture *f = *state;
    static const char *const lexical[] = {"1.0", "1.10", "1.9"};
    git_oid head, id, tree_oid;
    git_commit *tip = NULL;
    git_tree *tree = NULL;
    git_signature *sig = NULL;
    bool changed = false;

    push(f, "app", "1.9");
    push(f, "app", "1.10");
    push(f, "app", "1.0");
    /* as an imgstore from before the name index left it: everything but index/app/names
     * (written through imgstore's own commit path, so the other indexes stay current) */
    assert_int_equal(git_reference_name_to_id(&head, f->store->repo, IMGSTORE_STORE_REF), 0);
    assert_int_equal(git_commit_lookup(&tip, f->store->repo, &head), 0);
    assert_int_equal(git_commit_tree(&tree, tip), 0);
    tree_oid = *git_tree_id(tree);
    assert_int_equal(imgstore_store__tree_set(&tree_oid, f->store, "index/app/names", NULL, 0), 0);
    git_tree_free(tree);
    assert_int_equal(git_tree_lookup(&tree, f->store->repo, &tree_oid), 0);
    assert_int_equal(git_signature_now(&sig, "git", "git@example"), 0);
    assert_int_equal(git_commit_create_v(&id, f->store->repo, IMGSTORE_STORE_REF, sig, sig, NULL,
                                         "older imgstore", tree, 1, tip),
                     0);
    check_pages(f, lexical, 3, 2); /* sorted from images/app */
    check_row_pages(f, lexical, 3, 2);
    assert_int_equal(imgstore_store_index_check(f->store), IMGSTORE_EVERIFY);
    assert_int_equal(imgstore_store_reindex(&changed, f->store, "test", test_key), 0);
    assert_true(changed);
    assert_int_equal(imgstore_store_index_check(f->store), 0);
    check_pages(f, lexical, 3, 2);
    git_signature_free(sig);
    git_tree_free(tree);
    git_commit_free(tip);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(names_stay_sorted_through_inserts_splits_and_removals,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(tag_pages_are_lexical_through_push_prune_and_reindex, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(version_rows_page_by_name_across_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(a_segment_with_a_nul_is_refused_as_damage, setup, teardown),
        cmocka_unit_test_setup_teardown(a_store_without_the_name_index_sorts_until_reindex, setup,
                                        teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
