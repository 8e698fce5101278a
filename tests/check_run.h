/* Runs a Check suite and turns the result into an exit status; shared by
 * every test program. */
#ifndef CHAT_TEST_CHECK_RUN_H
#define CHAT_TEST_CHECK_RUN_H

#include <check.h>

static inline int chat_test_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    int failed;

    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}

#endif
