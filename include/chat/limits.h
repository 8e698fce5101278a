/**
 * @file chat/limits.h
 * @brief Protocol and data limits, in one place.
 *
 * "chars" are Unicode code points; "bytes" are UTF-8 bytes.
 */
#ifndef CHAT_LIMITS_H
#define CHAT_LIMITS_H

/** Length of a textual UUID ("xxxxxxxx-xxxx-...") without the NUL. */
#define CHAT_ID_LEN 36
/** Length of an RFC 3339 UTC time "YYYY-MM-DDTHH:MM:SS.mmmZ". */
#define CHAT_TIME_LEN 24

/** Message previews: first 200 chars, cut on a code point boundary. */
#define CHAT_PREVIEW_CHARS     200
#define CHAT_PREVIEW_MAX_BYTES (CHAT_PREVIEW_CHARS * 4)
/** Message content: valid UTF-8, 1 byte to 64 KiB. */
#define CHAT_MESSAGE_MAX_BYTES 65536
/** client_msg_id: 1-64 bytes of printable ASCII. */
#define CHAT_CLIENT_MSG_ID_MAX 64

/** Users. */
#define CHAT_EMAIL_MAX          254
#define CHAT_USERNAME_MIN       3
#define CHAT_USERNAME_MAX       32
#define CHAT_PASSWORD_MIN       8
#define CHAT_PASSWORD_MAX_BYTES 1024
/** libsodium crypto_pwhash_STRBYTES. */
#define CHAT_PWHASH_MAX 128

/** Conversations. */
#define CHAT_GROUP_MAX_MEMBERS 100
#define CHAT_TITLE_MAX_CHARS   100
#define CHAT_TITLE_MAX_BYTES   (CHAT_TITLE_MAX_CHARS * 4)

/** Paging. */
#define CHAT_PAGE_DEFAULT 50
#define CHAT_PAGE_MAX     200
#define CHAT_SEARCH_MAX   50

/** Tokens. */
#define CHAT_JWT_SECRET_MIN      32
#define CHAT_ACCESS_TTL_DEFAULT  900          /* 15 minutes */
#define CHAT_REFRESH_TTL_DEFAULT (30 * 86400) /* 30 days */
/** Refresh token: 32 random bytes, base64url without padding. */
#define CHAT_REFRESH_TOKEN_LEN 43
/** Largest access token accepted for verification. */
#define CHAT_JWT_MAX 2048

/** HTTP. */
#define CHAT_HTTP_BODY_MAX_DEFAULT (128 * 1024)

#endif /* CHAT_LIMITS_H */
