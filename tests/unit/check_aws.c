/* lib/aws: SigV4 known answers and the DynamoDB client's input checks.
 * The expected signatures come from AWS's SigV4 test suite (get-vanilla)
 * and from botocore 1.43.11's SigV4Auth on the same requests. */
#include <check.h>
#include <string.h>

#include <chat/chat.h>
#include "aws/dynamodb.h"
#include "aws/sigv4.h"
#include "check_run.h"

static const char SECRET[] = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

START_TEST(sigv4_aws_suite_get_vanilla)
{
    const char *h[] = {"host:example.amazonaws.com",
                       "x-amz-date:20150830T123600Z"};
    chat__sigv4 k = {"AKIDEXAMPLE", SECRET, NULL, "us-east-1", "service"};
    chat__sigv4_req r = {"GET", "/", "", h, 2, "20150830T123600Z", "", 0};
    char auth[CHAT__SIGV4_AUTH_MAX];

    ck_assert_int_eq(chat__sigv4_authorization(&k, &r, auth), CHAT_OK);
    ck_assert_str_eq(auth,
                     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/"
                     "us-east-1/service/aws4_request, SignedHeaders=host;"
                     "x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e"
                     "8372ff2a2260956d9b8aae1d763fbf31");
}
END_TEST

START_TEST(sigv4_dynamodb_requests)
{
    const char *h[] = {"content-type:application/x-amz-json-1.0",
                       "host:127.0.0.1:8000", "x-amz-date:20150830T123600Z",
                       "x-amz-target:DynamoDB_20120810.ListTables"};
    const char *ht[] = {"content-type:application/x-amz-json-1.0",
                        "host:127.0.0.1:8000", "x-amz-date:20150830T123600Z",
                        "x-amz-security-token:FQoGZXIvYXdzEXAMPLE",
                        "x-amz-target:DynamoDB_20120810.DescribeTable"};
    const char body[] = "{\"TableName\":\"messages\"}";
    chat__sigv4 k = {"AKIDEXAMPLE", SECRET, NULL, "us-east-1", "dynamodb"};
    chat__sigv4_req r = {"POST", "/", "", h, 4, "20150830T123600Z", "{}", 2};
    char auth[CHAT__SIGV4_AUTH_MAX];

    ck_assert_int_eq(chat__sigv4_authorization(&k, &r, auth), CHAT_OK);
    ck_assert_str_eq(auth,
                     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/"
                     "us-east-1/dynamodb/aws4_request, SignedHeaders="
                     "content-type;host;x-amz-date;x-amz-target, Signature="
                     "ed4d26ecc5b84a2e7026dbbc02c70e1fc0132f8eb32a500a6a406bb"
                     "64efda3ce");
    k.session_token = "FQoGZXIvYXdzEXAMPLE";
    r.headers = ht;
    r.nheaders = 5;
    r.body = body;
    r.body_len = strlen(body);
    ck_assert_int_eq(chat__sigv4_authorization(&k, &r, auth), CHAT_OK);
    ck_assert_str_eq(auth,
                     "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/"
                     "us-east-1/dynamodb/aws4_request, SignedHeaders="
                     "content-type;host;x-amz-date;x-amz-security-token;"
                     "x-amz-target, Signature=ba1776d5a96713da720c6831986bd1"
                     "ba8cf2d509ab9c9f7fe93dc58d8722dd43");
    /* one byte of the body changes the signature */
    r.body_len--;
    ck_assert_int_eq(chat__sigv4_authorization(&k, &r, auth), CHAT_OK);
    ck_assert_ptr_null(strstr(auth, "ba1776d5a96713da"));
}
END_TEST

START_TEST(sigv4_refuses_incomplete_requests)
{
    const char *h[] = {"host:x"}, *bad[] = {"no-colon"};
    chat__sigv4 k = {"AKID", "secret", NULL, "us-east-1", "dynamodb"};
    chat__sigv4_req r = {"POST", "/", "", h, 1, "20150830T123600Z", "", 0};
    char auth[CHAT__SIGV4_AUTH_MAX], date[17];

    k.access_key = NULL;
    ck_assert_int_eq(chat__sigv4_authorization(&k, &r, auth), CHAT_EINVAL);
    k.access_key = "AKID";
    r.amz_date = "2015";
    ck_assert_int_eq(chat__sigv4_authorization(&k, &r, auth), CHAT_EINVAL);
    r.amz_date = "20150830T123600Z";
    r.headers = bad;
    ck_assert_int_eq(chat__sigv4_authorization(&k, &r, auth), CHAT_EINVAL);
    r.nheaders = 0;
    ck_assert_int_eq(chat__sigv4_authorization(&k, &r, auth), CHAT_EINVAL);
    chat__sigv4_date(1440938160, date);
    ck_assert_str_eq(date, "20150830T123600Z");
}
END_TEST

START_TEST(dynamodb_client_checks_its_options)
{
    chat_dynamodb_opts o;
    chat__ddb *d = NULL;
    chat_log *l = NULL;
    cJSON *req = cJSON_CreateObject();

    chat_dynamodb_opts_init(&o);
    ck_assert_int_eq(o.create_tables, 1);
    ck_assert_int_eq(chat__ddb_new(&d, &o), CHAT_EINVAL); /* no keys */
    o.access_key = "AKID";
    o.secret_key = "secret";
    o.endpoint = "ftp://127.0.0.1:1/";
    ck_assert_int_eq(chat__ddb_new(&d, &o), CHAT_EINVAL);
    o.endpoint = "http://127.0.0.1:1/some/path";
    ck_assert_int_eq(chat__ddb_new(&d, &o), CHAT_EINVAL);
    o.endpoint = "not a url";
    ck_assert_int_eq(chat__ddb_new(&d, &o), CHAT_EINVAL);
    o.table = "x!";
    ck_assert_int_eq(chat_log_dynamodb_open(&l, &o), CHAT_EINVAL);
    o.table = "ab";
    ck_assert_int_eq(chat_log_dynamodb_open(&l, &o), CHAT_EINVAL);
    o.table = NULL;
    o.version = 99;
    ck_assert_int_eq(chat_log_dynamodb_open(&l, &o), CHAT_EINVAL);
    o.version = CHAT_DYNAMODB_OPTS_VERSION;

    /* nothing listens on port 1: retried, then unavailable */
    o.endpoint = "http://127.0.0.1:1";
    o.max_attempts = 2;
    o.timeout_ms = 500;
    ck_assert_int_eq(chat__ddb_new(&d, &o), CHAT_OK);
    ck_assert_int_eq(chat__ddb_call(d, "ListTables", req, NULL), CHAT_EUNAVAIL);
    ck_assert_ptr_nonnull(strstr(chat_error_last()->message, "ListTables"));
    chat__ddb_free(d);
    ck_assert_int_eq(chat_log_dynamodb_open(&l, &o), CHAT_EUNAVAIL);
    ck_assert_ptr_null(l);
    cJSON_Delete(req);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("aws");
    TCase *tc = tcase_create("sigv4 and dynamodb client");

    tcase_add_test(tc, sigv4_aws_suite_get_vanilla);
    tcase_add_test(tc, sigv4_dynamodb_requests);
    tcase_add_test(tc, sigv4_refuses_incomplete_requests);
    tcase_add_test(tc, dynamodb_client_checks_its_options);
    suite_add_tcase(s, tc);
    return chat_test_run(s);
}
