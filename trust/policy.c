/*
 * Thresholds and the policy chain, as pure functions over bytes and signatures: what the
 * store runs over its tree and the remote client over a server's answers
 * (docs/security.md). Moved here from store/signed.c (#11) so that client/ verifies without
 * linking libgit2.
 *
 * Not here: fetching the chain (store/signed.c, client/verify.c), pinning it (client/).
 */
#include "trust/trust.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int imgstore_trust_signatures_count(imgstore_trust_status *out, const imgstore_policy *policy,
                                    imgstore_role role, const char *const *armored, size_t count,
                                    const void *msg, size_t len)
{
    const imgstore_policy_role *r;
    bool seen[IMGSTORE_POLICY_KEYS_MAX] = {false};
    char first_problem[1024] = "";

    memset(out, 0, sizeof(*out));
    if (!policy || role < 0 || role >= IMGSTORE_ROLE_COUNT || (count && !armored))
        return imgstore_error_set(IMGSTORE_EINVALID, "signatures_count: bad arguments");
    r = &policy->roles[role];
    out->threshold = r->threshold;
    for (size_t i = 0; i < count; i++) {
        imgstore_sign_pubkey signer;
        int index = -1;

        if (!armored[i] || imgstore_sign_sshsig_verify(&signer, armored[i], strlen(armored[i]),
                                                       IMGSTORE_SIGN_NAMESPACE, msg, len) < 0) {
            out->invalid++;
            if (!first_problem[0])
                snprintf(first_problem, sizeof(first_problem), "signature %zu: %s", i + 1,
                         armored[i] ? imgstore_error_last() : "missing");
            continue;
        }
        for (size_t k = 0; k < r->key_count && k < IMGSTORE_POLICY_KEYS_MAX; k++) {
            imgstore_sign_pubkey key;

            if (imgstore_sign_pubkey_parse(&key, r->keys[k]) == 0 &&
                imgstore_sign_pubkey_equal(&key, &signer))
                index = (int)k;
        }
        if (index >= 0)
            seen[index] = true; /* a key outside the role simply does not count */
    }
    for (size_t k = 0; k < r->key_count && k < IMGSTORE_POLICY_KEYS_MAX; k++)
        out->valid += seen[k];
    out->trusted = out->valid >= out->threshold;
    if (first_problem[0])
        imgstore_error_set(IMGSTORE_EVERIFY, "%s", first_problem);
    else
        imgstore_error_clear();
    return 0;
}

int imgstore_trust_policy_chain_verify(imgstore_policy **current_out,
                                       const imgstore_policy_link *links, size_t count,
                                       const char *pinned_first_sha256)
{
    imgstore_policy *previous = NULL, *policy = NULL;
    imgstore_trust_status status;
    char digest[65];
    int err = 0;

    if (current_out)
        *current_out = NULL;
    if (count == 0)
        return imgstore_error_set(IMGSTORE_EVERIFY, "no trust policy");
    for (size_t i = 0; i < count; i++) {
        const imgstore_policy_link *l = &links[i];

        if (!imgstore_schema_policy_is_canonical(l->policy, l->policy_len) ||
            (err = imgstore_schema_policy_parse(&policy, l->policy, l->policy_len)) < 0) {
            err = imgstore_error_set(IMGSTORE_EVERIFY, "policy %llu is damaged or not canonical",
                                     (unsigned long long)l->version);
            goto done;
        }
        if (policy->version != (previous ? previous->version + 1 : 1) ||
            policy->version != l->version) {
            err = imgstore_error_set(IMGSTORE_EVERIFY,
                                     "policy %llu follows policy %llu; versions must start at 1 "
                                     "and grow by one",
                                     (unsigned long long)policy->version,
                                     (unsigned long long)(previous ? previous->version : 0));
            goto done;
        }
        if (i == 0 && pinned_first_sha256) {
            if ((err = imgstore_sha256_hex(digest, l->policy, l->policy_len)) < 0)
                goto done;
            if (strcmp(digest, pinned_first_sha256) != 0) {
                err = imgstore_error_set(IMGSTORE_EVERIFY,
                                         "policy 1 has sha256 %s, not the pinned %s: this is "
                                         "not the store first seen under this id",
                                         digest, pinned_first_sha256);
                goto done;
            }
        }
        /* policy 1 vouches for itself (it is the root of trust); every later one needs its
         * predecessor's root keys */
        if ((err = imgstore_trust_signatures_count(
                 &status, previous ? previous : policy, IMGSTORE_ROLE_ROOT,
                 (const char *const *)l->signatures, l->signature_count, l->policy,
                 l->policy_len)) < 0)
            goto done;
        if (!status.trusted || status.invalid) {
            err = imgstore_error_set(
                IMGSTORE_EVERIFY, "policy %llu has %zu of the %u root signatures it needs%s%s",
                (unsigned long long)policy->version, status.valid, status.threshold,
                status.invalid ? "; " : "", status.invalid ? imgstore_error_last() : "");
            goto done;
        }
        imgstore_policy_free(previous);
        previous = policy;
        policy = NULL;
    }
    if (current_out) {
        *current_out = previous;
        previous = NULL;
    }
done:
    imgstore_policy_free(policy);
    imgstore_policy_free(previous);
    return err;
}

void imgstore_policy_chain_free(imgstore_policy_link *links, size_t count)
{
    for (size_t i = 0; links && i < count; i++) {
        free(links[i].policy);
        imgstore_strings_free(links[i].signatures, links[i].signature_count);
    }
    free(links);
}
