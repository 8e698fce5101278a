/* A minimal DynamoDB client: one JSON API call per chat__ddb_call, signed
 * with SigV4 and sent with libcurl, retried with backoff on throttling,
 * 5xx and transport errors. One chat__ddb per thread (it owns a curl easy
 * handle and its connection). */
#ifndef CHAT_AWS_DYNAMODB_H
#define CHAT_AWS_DYNAMODB_H

#include <cjson/cJSON.h>

#include <chat/store.h>

typedef struct chat__ddb chat__ddb;

/* Copies what it needs from o (endpoint may be NULL: AWS's regional one). */
int chat__ddb_new(chat__ddb **out, const chat_dynamodb_opts *o);
void chat__ddb_free(chat__ddb *d);

/*
 * Call operation op ("PutItem", ...) with body req. On CHAT_OK, *resp (if
 * resp is not NULL) is the parsed answer; free it with cJSON_Delete.
 * DynamoDB's own refusals map to: ConditionalCheckFailedException ->
 * CHAT_ECONFLICT, ResourceNotFoundException -> CHAT_ENOTFOUND,
 * ResourceInUseException -> CHAT_ECONFLICT, ValidationException and other
 * 4xx -> CHAT_EINVAL (the last error holds AWS's message). Throttling, 5xx
 * and transport errors are retried; when attempts run out, CHAT_EUNAVAIL.
 */
int chat__ddb_call(chat__ddb *d, const char *op, const cJSON *req,
                   cJSON **resp);

/* The short name of the last AWS error type seen by d ("" if none). */
const char *chat__ddb_last_type(const chat__ddb *d);

#endif /* CHAT_AWS_DYNAMODB_H */
