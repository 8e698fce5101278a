/* user-service: registration, login, token refresh/logout, user lookup.
 * Edge prefix /api/users. */
#include <string.h>

#include <sodium.h>

#include "services/services.h"

#define P "/api/users"

/* A hash of a random password: login runs one verify even for unknown
 * accounts, so response time does not reveal which accounts exist. */
static char g_dummy_hash[CHAT_PWHASH_MAX];

static int email_valid(const char *e)
{
    const char *at = strchr(e, '@');
    const char *p;

    if (at == NULL || at == e || strchr(at + 1, '@') || at[1] == '\0' ||
        strchr(at + 1, '.') == NULL)
        return 0;
    for (p = e; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return 0;
    return 1;
}

static int username_valid(const char *u)
{
    size_t n = strlen(u), i;

    if (n < CHAT_USERNAME_MIN || n > CHAT_USERNAME_MAX)
        return 0;
    for (i = 0; i < n; i++) {
        char c = u[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

static int rate_check(chat__req *r, const chat__rate *rate, const char *kind,
                      const char *id)
{
    char key[CHAT_EMAIL_MAX + 32];
    int retry;

    snprintf(key, sizeof key, "%s:%s", kind, id);
    if (chat__ratelimit_take(chat__http_ratelimit(r->http), rate, key,
                             &retry) == CHAT_OK)
        return 0;
    chat__metrics_inc(chat__http_metrics(r->http), CHAT__C_RATE_LOGIN);
    r->retry_after = retry;
    chat__req_error(r, 429, "rate_limited", "too many attempts; retry in %d s",
                    retry);
    return -1;
}

/* Answer {access_token, refresh_token, token_type, expires_in, user}. */
static void reply_tokens(chat__svc *svc, chat__req *r, const chat_user *u,
                         const char *refresh, int status)
{
    char jwt[CHAT_JWT_MAX];
    chat_jwt_claims c;
    cJSON *o, *user;
    int rc;

    memset(&c, 0, sizeof c);
    memcpy(c.sub, u->id, sizeof c.sub);
    if ((rc = chat_uuid_v7(c.jti)) != CHAT_OK)
        goto fail;
    c.iat = chat_time_now_ms() / 1000;
    c.exp = c.iat + svc->access_ttl_s;
    if ((rc = chat_jwt_sign(svc->jwt_key, svc->jwt_key_len, &c, jwt,
                            sizeof jwt)) != CHAT_OK)
        goto fail;
    o = cJSON_CreateObject();
    user = chat__json_user(u, 1);
    if (o == NULL || user == NULL ||
        !cJSON_AddStringToObject(o, "access_token", jwt) ||
        !cJSON_AddStringToObject(o, "refresh_token", refresh) ||
        !cJSON_AddStringToObject(o, "token_type", "Bearer") ||
        !cJSON_AddNumberToObject(o, "expires_in", svc->access_ttl_s)) {
        cJSON_Delete(o);
        cJSON_Delete(user);
        rc = CHAT_ENOMEM;
        goto fail;
    }
    cJSON_AddItemToObject(o, "user", user);
    chat__req_reply(r, status, o);
    return;
fail:
    chat__req_fail(r, rc);
}

static void h_register(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    const char *email, *password, *username;
    chat_user u;
    cJSON *body;
    int rc;

    if (rate_check(r, &svc->rate_login_ip, "ip", r->ip))
        return;
    if ((body = chat__req_json(r)) == NULL)
        return;
    email = chat__field_str(r, body, "email", CHAT_EMAIL_MAX, 1);
    if (email == NULL)
        goto out;
    username = chat__field_str(r, body, "username", CHAT_USERNAME_MAX * 4, 1);
    if (username == NULL)
        goto out;
    password = chat__field_str(r, body, "password", CHAT_PASSWORD_MAX_BYTES, 1);
    if (password == NULL)
        goto out;
    if (!email_valid(email)) {
        chat__req_error(r, 422, "validation_failed", "email is not valid");
        goto out;
    }
    if (!username_valid(username)) {
        chat__req_error(
            r, 422, "validation_failed",
            "username must be %d-%d characters of A-Z a-z 0-9 _ . -",
            CHAT_USERNAME_MIN, CHAT_USERNAME_MAX);
        goto out;
    }
    if (chat_utf8_chars(password, strlen(password)) < CHAT_PASSWORD_MIN) {
        chat__req_error(r, 422, "validation_failed",
                        "password must be at least %d characters",
                        CHAT_PASSWORD_MIN);
        goto out;
    }
    memset(&u, 0, sizeof u);
    chat__ascii_lower(u.email, email, sizeof u.email);
    chat__strlcpy(u.username, username, sizeof u.username);
    u.created_at = chat_time_now_ms();
    if ((rc = chat_uuid_v7(u.id)) != CHAT_OK ||
        (rc = chat_password_hash(password, strlen(password),
                                 u.password_hash)) != CHAT_OK ||
        (rc = chat_store_user_create(svc->store, &u)) != CHAT_OK) {
        chat__req_fail(r, rc);
        goto out;
    }
    chat__metrics_inc(chat__http_metrics(r->http), CHAT__C_USERS_REGISTERED);
    chat__req_reply(r, 201, chat__json_user(&u, 1));
    if (CHAT__REQ_BODY_LEN(r) == 0)
        chat__req_fail(r, CHAT_ENOMEM);
out:
    cJSON_Delete(body);
}

static void h_login(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    const char *login = NULL, *password;
    char key[CHAT_EMAIL_MAX + 1], refresh[CHAT_REFRESH_TOKEN_LEN + 1];
    chat_refresh_rec rec;
    chat_user u;
    cJSON *body;
    int rc, found;

    if (rate_check(r, &svc->rate_login_ip, "ip", r->ip))
        return;
    if ((body = chat__req_json(r)) == NULL)
        return;
    static const char *const keys[] = {"email", "username", "login"};
    for (size_t i = 0; i < CHAT__ARRAY_LEN(keys) && !login; i++) {
        login = chat__field_str(r, body, keys[i], CHAT_EMAIL_MAX, 0);
        if (r->status)
            goto out;
    }
    if (login == NULL) {
        chat__req_error(r, 422, "validation_failed",
                        "email or username is required");
        goto out;
    }
    password = chat__field_str(r, body, "password", CHAT_PASSWORD_MAX_BYTES, 1);
    if (password == NULL)
        goto out;
    chat__ascii_lower(key, login, sizeof key);
    if (rate_check(r, &svc->rate_login_account, "acct", key))
        goto out;

    rc = chat_store_user_find_login(svc->store, login, &u);
    if (rc != CHAT_OK && rc != CHAT_ENOTFOUND) {
        chat__req_fail(r, rc);
        goto out;
    }
    found = rc == CHAT_OK;
    rc = chat_password_verify(found ? u.password_hash : g_dummy_hash, password,
                              strlen(password));
    if (!found || rc != CHAT_OK) {
        chat__metrics_inc(chat__http_metrics(r->http), CHAT__C_AUTH_FAIL_LOGIN);
        CHAT_LOG(CHAT_LOG_WARN, "req=%s event=login_failed ip=%s",
                 r->request_id, r->ip);
        chat__req_error(r, 401, "invalid_credentials",
                        "wrong email/username or password");
        goto out;
    }
    memset(&rec, 0, sizeof rec);
    memcpy(rec.user_id, u.id, sizeof rec.user_id);
    rec.expires_at = chat_time_now_ms() + (int64_t)svc->refresh_ttl_s * 1000;
    if ((rc = chat_uuid_v7(rec.family_id)) != CHAT_OK ||
        (rc = chat_refresh_token_new(refresh)) != CHAT_OK ||
        (rc = chat_refresh_token_hash(refresh, strlen(refresh), rec.hash)) !=
            CHAT_OK ||
        (rc = chat_store_token_insert(svc->store, &rec)) != CHAT_OK) {
        chat__req_fail(r, rc);
        goto out;
    }
    reply_tokens(svc, r, &u, refresh, 200);
out:
    sodium_memzero(refresh, sizeof refresh);
    cJSON_Delete(body);
}

/* The refresh token field of a refresh/logout body, hashed. */
static int body_refresh_hash(chat__req *r, uint8_t hash[32])
{
    const char *tok;
    cJSON *body = chat__req_json(r);
    int rc = -1;

    if (body == NULL)
        return -1;
    tok = chat__field_str(r, body, "refresh_token", 256, 1);
    if (tok != NULL) {
        rc = chat_refresh_token_hash(tok, strlen(tok), hash);
        if (rc != CHAT_OK)
            chat__req_fail(r, rc);
    }
    cJSON_Delete(body);
    return rc;
}

static void h_refresh(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    char refresh[CHAT_REFRESH_TOKEN_LEN + 1];
    uint8_t old[32], fresh[32];
    chat_refresh_rec rec;
    chat_user u;
    int64_t now = chat_time_now_ms();
    int rc;

    if (body_refresh_hash(r, old) != CHAT_OK)
        return;
    if ((rc = chat_refresh_token_new(refresh)) != CHAT_OK ||
        (rc = chat_refresh_token_hash(refresh, strlen(refresh), fresh)) !=
            CHAT_OK) {
        chat__req_fail(r, rc);
        return;
    }
    rc = chat_store_token_rotate(svc->store, old, fresh,
                                 now + (int64_t)svc->refresh_ttl_s * 1000, now,
                                 &rec);
    if (rc == CHAT_EAUTH || rc == CHAT_EEXPIRED) {
        const char *msg = chat_error_last()->message;
        int reuse = strstr(msg, "reuse") != NULL;
        chat__metrics_inc(chat__http_metrics(r->http),
                          reuse ? CHAT__C_AUTH_REFRESH_REUSE
                                : CHAT__C_AUTH_FAIL_REFRESH);
        if (reuse)
            CHAT_LOG(CHAT_LOG_WARN,
                     "req=%s event=refresh_reuse ip=%s action=family_revoked",
                     r->request_id, r->ip);
        chat__req_error(r, 401,
                        rc == CHAT_EEXPIRED ? "refresh_expired"
                                            : "invalid_refresh_token",
                        "%s", reuse ? msg : "refresh token is not valid");
        goto out;
    }
    if (rc != CHAT_OK ||
        (rc = chat_store_user_get(svc->store, rec.user_id, &u)) != CHAT_OK) {
        chat__req_fail(r, rc);
        goto out;
    }
    reply_tokens(svc, r, &u, refresh, 200);
out:
    sodium_memzero(refresh, sizeof refresh);
}

static void h_logout(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    uint8_t hash[32];
    int rc;

    if (body_refresh_hash(r, hash) != CHAT_OK)
        return;
    /* Unknown tokens get 204 too: logout is idempotent and says nothing
     * about which tokens exist. */
    rc = chat_store_token_revoke_family(svc->store, hash);
    if (rc != CHAT_OK && rc != CHAT_ENOTFOUND) {
        chat__req_fail(r, rc);
        return;
    }
    chat__req_reply(r, 204, NULL);
}

static void reply_user(chat__req *r, chat_store *store, const char *id,
                       int with_email)
{
    chat_user u;
    int rc = chat_store_user_get(store, id, &u);
    cJSON *o;

    if (rc == CHAT_ENOTFOUND) {
        chat__req_error(r, 404, "not_found", "no such user");
        return;
    }
    if (rc != CHAT_OK || (o = chat__json_user(&u, with_email)) == NULL) {
        chat__req_fail(r, rc ? rc : CHAT_ENOMEM);
        return;
    }
    chat__req_reply(r, 200, o);
}

static void h_me(chat__req *r, void *ud)
{
    reply_user(r, ((chat__svc *)ud)->store, r->user_id, 1);
}

static void h_user(chat__req *r, void *ud)
{
    const char *id = chat__param_id(r, 0, "user");

    if (id)
        reply_user(r, ((chat__svc *)ud)->store, id, 0);
}

static void h_search(chat__req *r, void *ud)
{
    chat__svc *svc = ud;
    const char *q = chat__req_query(r, "query");
    const char *lim = chat__req_query(r, "limit");
    chat_user users[CHAT_SEARCH_MAX];
    cJSON *o, *arr;
    long limit = 20;
    int n = 0, rc, i;

    if (q == NULL)
        q = chat__req_query(r, "q");
    if (q == NULL || q[0] == '\0' || strlen(q) > CHAT_EMAIL_MAX ||
        !chat_utf8_valid(q, strlen(q))) {
        chat__req_error(r, 422, "validation_failed",
                        "query must be 1 to %d bytes of text", CHAT_EMAIL_MAX);
        return;
    }
    if (lim) {
        char *end;
        limit = strtol(lim, &end, 10);
        if (*end || limit < 1 || limit > CHAT_SEARCH_MAX) {
            chat__req_error(r, 422, "validation_failed",
                            "limit must be 1 to %d", CHAT_SEARCH_MAX);
            return;
        }
    }
    rc = chat_store_user_search(svc->store, q, (int)limit, users, &n);
    if (rc != CHAT_OK) {
        chat__req_fail(r, rc);
        return;
    }
    o = cJSON_CreateObject();
    arr = cJSON_AddArrayToObject(o, "users");
    if (arr == NULL)
        goto oom;
    for (i = 0; i < n; i++) {
        cJSON *u = chat__json_user(&users[i], 0);
        if (u == NULL)
            goto oom;
        cJSON_AddItemToArray(arr, u);
    }
    chat__req_reply(r, 200, o);
    return;
oom:
    cJSON_Delete(o);
    chat__req_fail(r, CHAT_ENOMEM);
}

int chat__users_mount(chat__svc *svc)
{
    char pw[32];
    chat__http *h = svc->http;
    int rc;

    if (g_dummy_hash[0] == '\0') {
        randombytes_buf(pw, sizeof pw);
        for (size_t i = 0; i < sizeof pw; i++)
            pw[i] = (char)('a' + (unsigned char)pw[i] % 26);
        if ((rc = chat_password_hash(pw, sizeof pw, g_dummy_hash)) != CHAT_OK)
            return rc;
    }
    if ((rc = chat__http_route(h, CHAT__POST, P "/auth/register",
                               CHAT__ROUTE_SLOW, h_register, svc)) ||
        (rc = chat__http_route(h, CHAT__POST, P "/auth/login", CHAT__ROUTE_SLOW,
                               h_login, svc)) ||
        (rc = chat__http_route(h, CHAT__POST, P "/auth/refresh", 0, h_refresh,
                               svc)) ||
        (rc = chat__http_route(h, CHAT__POST, P "/auth/logout", 0, h_logout,
                               svc)) ||
        (rc = chat__http_route(h, CHAT__GET, P "/me", CHAT__ROUTE_AUTH, h_me,
                               svc)) ||
        (rc = chat__http_route(h, CHAT__GET, P "/users", CHAT__ROUTE_AUTH,
                               h_search, svc)) ||
        (rc = chat__http_route(h, CHAT__GET, P "/users/{id}", CHAT__ROUTE_AUTH,
                               h_user, svc)))
        return rc;
    return CHAT_OK;
}
