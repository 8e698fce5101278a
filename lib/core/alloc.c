/* Allocation hook: every libchat allocation (and cJSON's) goes through
 * here so applications can count, cap or fail allocations. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "core/internal.h"

static chat_allocator g_alloc = {malloc, realloc, free};

int chat_set_allocator(const chat_allocator *a)
{
    cJSON_Hooks hooks;

    if (a == NULL) {
        g_alloc.malloc_fn = malloc;
        g_alloc.realloc_fn = realloc;
        g_alloc.free_fn = free;
    } else {
        if (!a->malloc_fn || !a->realloc_fn || !a->free_fn)
            return chat__error(CHAT_EINVAL, "allocator needs all functions");
        g_alloc = *a;
    }
    hooks.malloc_fn = g_alloc.malloc_fn;
    hooks.free_fn = g_alloc.free_fn;
    cJSON_InitHooks(&hooks);
    return CHAT_OK;
}

void *chat__malloc(size_t n)
{
    return g_alloc.malloc_fn(n ? n : 1);
}

void *chat__calloc(size_t count, size_t size)
{
    void *p;

    if (size && count > SIZE_MAX / size)
        return NULL;
    p = chat__malloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *chat__realloc(void *p, size_t n)
{
    return g_alloc.realloc_fn(p, n ? n : 1);
}

void chat__free(void *p)
{
    if (p)
        g_alloc.free_fn(p);
}

void chat_free(void *ptr)
{
    chat__free(ptr);
}

char *chat__strndup(const char *s, size_t n)
{
    char *d = chat__malloc(n + 1);

    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *chat__strdup(const char *s)
{
    return s ? chat__strndup(s, strlen(s)) : NULL;
}

size_t chat__strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);

    if (size) {
        size_t k = n < size - 1 ? n : size - 1;
        memcpy(dst, src, k);
        dst[k] = '\0';
    }
    return n;
}

void chat__ascii_lower(char *dst, const char *src, size_t size)
{
    size_t i;

    if (!size)
        return;
    for (i = 0; i + 1 < size && src[i]; i++) {
        char c = src[i];
        dst[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    dst[i] = '\0';
}

unsigned chat__str_hash(const char *s)
{
    unsigned h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}
