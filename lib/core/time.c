/* Clocks and RFC 3339 UTC times. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/internal.h"

int64_t chat_time_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t chat__mono_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int chat_time_format(int64_t ms, char out[CHAT_TIME_LEN + 1])
{
    struct tm tm;
    time_t secs;
    int64_t frac;
    char tmp[64]; /* roomy: the compiler cannot bound tm's fields */

    CHAT_ASSERT_ARG(out != NULL);
    /* floor division so times before 1970 keep a positive fraction */
    frac = ms % 1000;
    if (frac < 0)
        frac += 1000;
    secs = (time_t)((ms - frac) / 1000);
    if (gmtime_r(&secs, &tm) == NULL || tm.tm_year + 1900 < 0 ||
        tm.tm_year + 1900 > 9999)
        return chat__error(CHAT_EINVAL, "time out of range");
    snprintf(tmp, sizeof tmp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int)frac);
    memcpy(out, tmp, CHAT_TIME_LEN + 1);
    return CHAT_OK;
}

/* Parse exactly n decimal digits. */
static int digits(const char *s, int n, int *out)
{
    int v = 0, i;

    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int chat_time_parse(const char *s, int64_t *ms)
{
    struct tm tm;
    int y, mo, d, h, mi, sec, frac = 0, scale = 1000, oh = 0, om = 0;
    int64_t t;
    const char *p;

    CHAT_ASSERT_ARG(s != NULL && ms != NULL);
    if (strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' ||
        digits(s + 5, 2, &mo) || s[7] != '-' || digits(s + 8, 2, &d) ||
        (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) ||
        s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
        digits(s + 17, 2, &sec))
        goto bad;
    p = s + 19;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            goto bad;
        for (; *p >= '0' && *p <= '9'; p++) {
            if (scale > 1) { /* keep milliseconds, drop finer digits */
                scale /= 10;
                frac += (*p - '0') * scale;
            }
        }
    }
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if ((*p == '+' || *p == '-') && !digits(p + 1, 2, &oh) &&
               p[3] == ':' && !digits(p + 4, 2, &om)) {
        if (oh > 23 || om > 59)
            goto bad;
        if (*p == '-') {
            oh = -oh;
            om = -om;
        }
        p += 6;
    } else {
        goto bad;
    }
    if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 ||
        mi > 59 || sec > 60)
        goto bad;

    memset(&tm, 0, sizeof tm);
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    t = (int64_t)timegm(&tm);
    *ms = (t - (int64_t)oh * 3600 - (int64_t)om * 60) * 1000 + frac;
    return CHAT_OK;
bad:
    return chat__error(CHAT_EINVAL, "not an RFC 3339 time");
}
