/*
 * fuzz_common.h — shared by the libFuzzer targets in test/fuzz/.
 *
 * In a FRONTEND build palloc is plain malloc and nothing is ever freed (the
 * codec relies on the backend's memory contexts), so a fuzzer running
 * millions of inputs in one process would grow without bound and trip
 * -rss_limit_mb.  This header replaces libpgcommon's palloc family with a
 * per-input arena: every chunk is linked into a list, and fuzz_reset()
 * frees them all after each input, like the backend resetting a context.
 * The linker then never pulls fe_memutils.o from libpgcommon_shlib.a.
 *
 * Allocations above MaxAllocSize abort: in the backend they would raise
 * ERROR, which the codec promises never to do (it returns false instead).
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include "rmq_codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct FuzzChunk
{
	struct FuzzChunk *prev;
	struct FuzzChunk *next;
	size_t		size;
	size_t		pad;			/* keep the payload 16-byte aligned */
} FuzzChunk;

static FuzzChunk fuzz_arena = {&fuzz_arena, &fuzz_arena, 0, 0};

static void
fuzz_link(FuzzChunk *c)
{
	c->prev = &fuzz_arena;
	c->next = fuzz_arena.next;
	fuzz_arena.next->prev = c;
	fuzz_arena.next = c;
}

static void
fuzz_unlink(FuzzChunk *c)
{
	c->prev->next = c->next;
	c->next->prev = c->prev;
}

static void
fuzz_check_size(Size size)
{
	if (size > MaxAllocSize)
	{
		fprintf(stderr, "palloc of %zu bytes (> MaxAllocSize): would be an ERROR in the backend\n",
				(size_t) size);
		abort();
	}
}

void *
palloc(Size size)
{
	FuzzChunk  *c;

	fuzz_check_size(size);
	c = malloc(sizeof(FuzzChunk) + size);
	if (c == NULL)
	{
		fprintf(stderr, "out of memory (%zu bytes)\n", (size_t) size);
		abort();
	}
	c->size = size;
	fuzz_link(c);
	return c + 1;
}

void *
palloc0(Size size)
{
	void	   *p = palloc(size);

	memset(p, 0, size);
	return p;
}

void *
palloc_extended(Size size, int flags)
{
	void	   *p = palloc(size);

	if (flags & MCXT_ALLOC_ZERO)
		memset(p, 0, size);
	return p;
}

void
pfree(void *pointer)
{
	FuzzChunk  *c = (FuzzChunk *) pointer - 1;

	fuzz_unlink(c);
	free(c);
}

void *
repalloc(void *pointer, Size size)
{
	FuzzChunk  *c = (FuzzChunk *) pointer - 1;
	FuzzChunk  *n;

	fuzz_check_size(size);
	fuzz_unlink(c);
	n = realloc(c, sizeof(FuzzChunk) + size);
	if (n == NULL)
	{
		fprintf(stderr, "out of memory (%zu bytes)\n", (size_t) size);
		abort();
	}
	n->size = size;
	fuzz_link(n);
	return n + 1;
}

char *
pnstrdup(const char *in, Size size)
{
	size_t		len = strnlen(in, size);
	char	   *out = palloc(len + 1);

	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

char *
pstrdup(const char *in)
{
	return pnstrdup(in, strlen(in));
}

/* Free everything palloc'd since the last reset. */
static void
fuzz_reset(void)
{
	while (fuzz_arena.next != &fuzz_arena)
	{
		FuzzChunk  *c = fuzz_arena.next;

		fuzz_unlink(c);
		free(c);
	}
}

/* A failed invariant is a finding: report and crash so libFuzzer saves the input. */
#define FUZZ_ASSERT(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

/* Read every byte so ASan checks the whole range is addressable. */
static volatile unsigned char fuzz_sink;

static pg_attribute_unused() void
fuzz_touch(const void *p, size_t len)
{
	const unsigned char *b = p;
	unsigned char x = 0;

	for (size_t i = 0; i < len; i++)
		x ^= b[i];
	fuzz_sink = x;
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#endif
