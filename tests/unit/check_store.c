/* lib/store: the SQLite account/conversation store. */
#include <check.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <chat/chat.h>
#include "check_run.h"

static char g_dir[64];
static char g_path[128];
static chat_store *S;

static int rm_entry(const char *p, const struct stat *sb, int f,
                    struct FTW *ftw)
{
    (void)sb;
    (void)f;
    (void)ftw;
    return remove(p);
}

static void setup(void)
{
    chat_sqlite_opts o = CHAT_SQLITE_OPTS_INIT;

    snprintf(g_dir, sizeof g_dir, "/tmp/chat-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_path, sizeof g_path, "%s/chat.db", g_dir);
    o.sync_full = 0;
    ck_assert_int_eq(chat_store_sqlite_open(&S, g_path, &o), CHAT_OK);
}

static void teardown(void)
{
    chat_store_free(S);
    S = NULL;
    nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void mkuser(const char *name, chat_user *u)
{
    memset(u, 0, sizeof *u);
    ck_assert_int_eq(chat_uuid_v7(u->id), CHAT_OK);
    snprintf(u->email, sizeof u->email, "%s@test.io", name);
    snprintf(u->username, sizeof u->username, "%s", name);
    snprintf(u->password_hash, sizeof u->password_hash, "$hash$%s", name);
    u->created_at = chat_time_now_ms();
    ck_assert_int_eq(chat_store_user_create(S, u), CHAT_OK);
}

START_TEST(users)
{
    chat_user a, b, dup, got, found[10];
    int n;

    mkuser("alice", &a);
    mkuser("bob", &b);
    dup = a;
    chat_uuid_v7(dup.id);
    snprintf(dup.username, sizeof dup.username, "other");
    snprintf(dup.email, sizeof dup.email, "ALICE@test.io");
    ck_assert_int_eq(chat_store_user_create(S, &dup), CHAT_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "email"));
    snprintf(dup.email, sizeof dup.email, "new@test.io");
    snprintf(dup.username, sizeof dup.username, "BOB");
    ck_assert_int_eq(chat_store_user_create(S, &dup), CHAT_ECONFLICT);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "username"));

    ck_assert_int_eq(chat_store_user_get(S, a.id, &got), CHAT_OK);
    ck_assert_str_eq(got.username, "alice");
    ck_assert_str_eq(got.password_hash, ""); /* not asked for */
    ck_assert_int_eq(chat_store_user_find_login(S, "Alice", &got), CHAT_OK);
    ck_assert_str_eq(got.password_hash, "$hash$alice");
    ck_assert_int_eq(chat_store_user_find_login(S, "BOB@TEST.IO", &got),
                     CHAT_OK);
    ck_assert_str_eq(got.id, b.id);
    ck_assert_int_eq(chat_store_user_find_login(S, "carol", &got),
                     CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_store_user_get(S, "nope", &got), CHAT_ENOTFOUND);

    ck_assert_int_eq(chat_store_user_search(S, "AL", 10, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(found[0].id, a.id);
    ck_assert_int_eq(chat_store_user_search(S, "%", 10, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 0); /* wildcards are literal */
    ck_assert_int_eq(chat_store_user_search(S, "", 10, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(chat_store_user_search(S, "", 1, found, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_int_eq(chat_store_user_search(S, "a", 0, found, &n), CHAT_EINVAL);
}
END_TEST

static chat_refresh_rec token(const char *user, uint8_t tag)
{
    chat_refresh_rec r;

    memset(&r, 0, sizeof r);
    memset(r.hash, tag, sizeof r.hash);
    chat_uuid_v7(r.family_id);
    memcpy(r.user_id, user, CHAT_ID_LEN);
    r.expires_at = chat_time_now_ms() + 60000;
    return r;
}

START_TEST(refresh_rotation_reuse_and_expiry)
{
    chat_user a;
    chat_refresh_rec t1, out;
    uint8_t h2[32], h3[32], h4[32];
    int64_t now = chat_time_now_ms();

    mkuser("alice", &a);
    t1 = token(a.id, 1);
    ck_assert_int_eq(chat_store_token_insert(S, &t1), CHAT_OK);
    memset(h2, 2, 32);
    ck_assert_int_eq(
        chat_store_token_rotate(S, t1.hash, h2, now + 60000, now, &out),
        CHAT_OK);
    ck_assert_str_eq(out.family_id, t1.family_id);
    ck_assert_str_eq(out.user_id, a.id);
    /* replaying t1 revokes the family: h2 dies too */
    memset(h3, 3, 32);
    ck_assert_int_eq(
        chat_store_token_rotate(S, t1.hash, h3, now + 60000, now, &out),
        CHAT_EAUTH);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "reuse"));
    ck_assert_int_eq(chat_store_token_rotate(S, h2, h3, now + 60000, now, &out),
                     CHAT_EAUTH);
    /* unknown */
    memset(h4, 4, 32);
    ck_assert_int_eq(chat_store_token_rotate(S, h4, h3, now + 60000, now, &out),
                     CHAT_EAUTH);
    /* expired */
    t1 = token(a.id, 5);
    t1.expires_at = now - 1;
    ck_assert_int_eq(chat_store_token_insert(S, &t1), CHAT_OK);
    ck_assert_int_eq(
        chat_store_token_rotate(S, t1.hash, h4, now + 60000, now, &out),
        CHAT_EEXPIRED);
    /* logout revokes */
    t1 = token(a.id, 6);
    ck_assert_int_eq(chat_store_token_insert(S, &t1), CHAT_OK);
    ck_assert_int_eq(chat_store_token_revoke_family(S, t1.hash), CHAT_OK);
    ck_assert_int_eq(
        chat_store_token_rotate(S, t1.hash, h4, now + 60000, now, &out),
        CHAT_EAUTH);
    ck_assert_int_eq(chat_store_token_revoke_family(S, h4), CHAT_ENOTFOUND);
}
END_TEST

START_TEST(dm_create_or_get)
{
    chat_user a, b;
    chat_conv c1, c2;
    int created = -1;

    mkuser("alice", &a);
    mkuser("bob", &b);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, b.id, &c1, &created), CHAT_OK);
    ck_assert_int_eq(created, 1);
    ck_assert_int_eq(c1.kind, CHAT_CONV_DM);
    ck_assert_int_eq(c1.member_count, 2);
    ck_assert_int_eq(chat_store_conv_dm(S, b.id, a.id, &c2, &created), CHAT_OK);
    ck_assert_int_eq(created, 0);
    ck_assert_str_eq(c1.id, c2.id);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, a.id, &c2, NULL), CHAT_EINVAL);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id,
                                        "00000000-0000-7000-8000-000000000000",
                                        &c2, NULL),
                     CHAT_ENOTFOUND);
}
END_TEST

START_TEST(peers_share_a_conversation)
{
    chat_user a, b, c, d;
    chat_conv dm, g;
    chat_id out[8];
    const char *members[1];
    int n = -1, i, seen_b = 0, seen_c = 0;

    mkuser("pa", &a);
    mkuser("pb", &b);
    mkuser("pc", &c);
    mkuser("pd", &d);
    ck_assert_int_eq(chat_store_peers(S, a.id, out, 8, &n), CHAT_OK);
    ck_assert_int_eq(n, 0);
    ck_assert_int_eq(chat_store_conv_dm(S, a.id, b.id, &dm, NULL), CHAT_OK);
    members[0] = c.id;
    ck_assert_int_eq(chat_store_conv_group(S, a.id, "g", members, 1, &g),
                     CHAT_OK);
    /* b also shares... nothing with c; a shares with both; d with nobody */
    ck_assert_int_eq(chat_store_peers(S, a.id, out, 8, &n), CHAT_OK);
    ck_assert_int_eq(n, 2);
    for (i = 0; i < n; i++) {
        seen_b += !strcmp(out[i].id, b.id);
        seen_c += !strcmp(out[i].id, c.id);
        ck_assert_str_ne(out[i].id, a.id);
    }
    ck_assert_int_eq(seen_b, 1);
    ck_assert_int_eq(seen_c, 1);
    ck_assert_int_eq(chat_store_peers(S, b.id, out, 8, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    ck_assert_str_eq(out[0].id, a.id);
    ck_assert_int_eq(chat_store_peers(S, d.id, out, 8, &n), CHAT_OK);
    ck_assert_int_eq(n, 0);
    /* at most max */
    ck_assert_int_eq(chat_store_peers(S, a.id, out, 1, &n), CHAT_OK);
    ck_assert_int_eq(n, 1);
    /* someone who left is no longer a peer */
    ck_assert_int_eq(chat_store_member_remove(S, g.id, c.id), CHAT_OK);
    ck_assert_int_eq(chat_store_peers(S, c.id, out, 8, &n), CHAT_OK);
    ck_assert_int_eq(n, 0);
}
END_TEST

START_TEST(groups_limits_and_ownership)
{
    static chat_user u[101];
    const char *ids[101];
    chat_member m[100];
    chat_conv g, got;
    int i, n;

    for (i = 0; i < 101; i++) {
        char name[16];
        snprintf(name, sizeof name, "user%03d", i);
        mkuser(name, &u[i]);
        ids[i] = u[i].id;
    }
    /* creator + 100 others is one too many */
    ck_assert_int_eq(chat_store_conv_group(S, u[0].id, "big", ids + 1, 100, &g),
                     CHAT_ELIMIT);
    /* duplicates and the creator are folded away */
    {
        const char *dups[] = {u[1].id, u[1].id, u[0].id, u[2].id};
        ck_assert_int_eq(
            chat_store_conv_group(S, u[0].id, "small", dups, 4, &g), CHAT_OK);
        ck_assert_int_eq(g.member_count, 3);
        ck_assert_int_eq(g.role, CHAT_ROLE_OWNER);
    }
    {
        const char *bad[] = {"00000000-0000-7000-8000-000000000000"};
        ck_assert_int_eq(chat_store_conv_group(S, u[0].id, "x", bad, 1, &got),
                         CHAT_ENOTFOUND);
    }
    /* fill it to 100 with member_add, then one more is refused */
    for (i = 3; i < 100; i++)
        ck_assert_int_eq(
            chat_store_member_add(S, g.id, u[i].id, CHAT_ROLE_MEMBER), CHAT_OK);
    ck_assert_int_eq(
        chat_store_member_add(S, g.id, u[100].id, CHAT_ROLE_MEMBER),
        CHAT_ELIMIT);
    ck_assert_int_eq(chat_store_member_add(S, g.id, u[5].id, CHAT_ROLE_MEMBER),
                     CHAT_ECONFLICT);
    ck_assert_int_eq(chat_store_conv_members(S, g.id, m, 100, &n), CHAT_OK);
    ck_assert_int_eq(n, 100);
    ck_assert_str_eq(m[0].user_id, u[0].id);
    ck_assert_int_eq(m[0].role, CHAT_ROLE_OWNER);

    /* outsiders and unknowns */
    ck_assert_int_eq(chat_store_conv_get(S, g.id, u[100].id, &got), CHAT_EPERM);
    ck_assert_int_eq(chat_store_conv_get(S,
                                         "00000000-0000-7000-8000-000000000000",
                                         u[0].id, &got),
                     CHAT_ENOTFOUND);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, NULL, &got), CHAT_OK);
    ck_assert_int_eq(got.role, -1);

    /* make u[7] an admin; when the owner leaves, the admin takes over */
    ck_assert_int_eq(chat_store_member_remove(S, g.id, u[7].id), CHAT_OK);
    ck_assert_int_eq(chat_store_member_add(S, g.id, u[7].id, CHAT_ROLE_ADMIN),
                     CHAT_OK);
    ck_assert_int_eq(chat_store_member_remove(S, g.id, u[0].id), CHAT_OK);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, u[7].id, &got), CHAT_OK);
    ck_assert_int_eq(got.role, CHAT_ROLE_OWNER);
    ck_assert_int_eq(got.member_count, 99);
    ck_assert_int_eq(chat_store_member_remove(S, g.id, u[0].id),
                     CHAT_ENOTFOUND);
    /* without admins the oldest member inherits */
    ck_assert_int_eq(chat_store_member_remove(S, g.id, u[7].id), CHAT_OK);
    ck_assert_int_eq(chat_store_conv_get(S, g.id, u[1].id, &got), CHAT_OK);
    ck_assert_int_eq(got.role, CHAT_ROLE_OWNER);
}
END_TEST

static chat_message msg_at(const char *conv, const char *sender, int64_t seq,
                           int64_t at)
{
    chat_message m;

    memset(&m, 0, sizeof m);
    chat_uuid_v7(m.id);
    memcpy(m.conversation_id, conv, CHAT_ID_LEN);
    memcpy(m.sender_id, sender, CHAT_ID_LEN);
    m.seq = seq;
    m.created_at = at;
    snprintf(m.preview, sizeof m.preview, "message %lld", (long long)seq);
    return m;
}

START_TEST(list_paging_touch_and_read)
{
    chat_user a, peers[25];
    chat_conv c[25], page[10];
    chat_conv_cursor cur;
    chat_message m;
    int i, n, seen = 0, pages = 0;
    int64_t stored, base = chat_time_now_ms();

    mkuser("alice", &a);
    for (i = 0; i < 25; i++) {
        char name[16];
        snprintf(name, sizeof name, "peer%02d", i);
        mkuser(name, &peers[i]);
        ck_assert_int_eq(chat_store_conv_dm(S, a.id, peers[i].id, &c[i], NULL),
                         CHAT_OK);
    }
    /* activity: conversation i was last active at base + i */
    for (i = 0; i < 25; i++) {
        m = msg_at(c[i].id, peers[i].id, 1, base + 1000 + i);
        ck_assert_int_eq(chat_store_conv_touch(S, &m), CHAT_OK);
    }
    /* an older seq does not move the summary back */
    m = msg_at(c[24].id, peers[24].id, 1, base);
    ck_assert_int_eq(chat_store_conv_touch(S, &m), CHAT_OK);

    memset(&cur, 0, sizeof cur);
    do {
        ck_assert_int_eq(
            chat_store_conv_list(S, a.id, pages ? &cur : NULL, 10, page, &n),
            CHAT_OK);
        for (i = 0; i < n; i++) {
            /* newest first: 24, 23, ... */
            ck_assert_str_eq(page[i].id, c[24 - seen].id);
            ck_assert_int_eq(page[i].last_seq, 1);
            ck_assert_int_eq(page[i].read_seq, 0);
            seen++;
        }
        if (n) {
            cur.activity_at = page[n - 1].last_activity_at;
            memcpy(cur.id, page[n - 1].id, sizeof cur.id);
        }
        pages++;
    } while (n == 10);
    ck_assert_int_eq(seen, 25);
    ck_assert_int_eq(pages, 3);
    ck_assert_int_eq(page[0].last_activity_at, base + 1004);

    /* the sender's marker moved with the touch */
    ck_assert_int_eq(chat_store_conv_get(S, c[3].id, peers[3].id, page),
                     CHAT_OK);
    ck_assert_int_eq(page[0].read_seq, 1);

    /* read markers: forward only, clamped to last_seq */
    m = msg_at(c[0].id, peers[0].id, 5, base + 5000);
    chat_store_conv_touch(S, &m);
    ck_assert_int_eq(chat_store_read_set(S, c[0].id, a.id, 3, &stored),
                     CHAT_OK);
    ck_assert_int_eq(stored, 3);
    ck_assert_int_eq(chat_store_read_set(S, c[0].id, a.id, 2, &stored),
                     CHAT_OK);
    ck_assert_int_eq(stored, 3);
    ck_assert_int_eq(chat_store_read_set(S, c[0].id, a.id, 99, &stored),
                     CHAT_OK);
    ck_assert_int_eq(stored, 5);
    ck_assert_int_eq(chat_store_read_set(S, c[0].id, peers[1].id, 1, &stored),
                     CHAT_EPERM);
}
END_TEST

START_TEST(persists_across_reopen)
{
    chat_user a, got;

    mkuser("alice", &a);
    chat_store_free(S);
    ck_assert_int_eq(chat_store_sqlite_open(&S, g_path, NULL), CHAT_OK);
    ck_assert_int_eq(chat_store_user_get(S, a.id, &got), CHAT_OK);
    ck_assert_str_eq(got.email, "alice@test.io");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("sqlite");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, users);
    tcase_add_test(tc, refresh_rotation_reuse_and_expiry);
    tcase_add_test(tc, dm_create_or_get);
    tcase_add_test(tc, peers_share_a_conversation);
    tcase_add_test(tc, groups_limits_and_ownership);
    tcase_add_test(tc, list_paging_touch_and_read);
    tcase_add_test(tc, persists_across_reopen);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
