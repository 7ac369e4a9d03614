# rocketmq_stream — PGXS build.
EXTENSION = rocketmq_stream
MODULE_big = rocketmq_stream
EXTVERSION = 0.2.0
# Every released version's script and the upgrades between them, so that
# CREATE EXTENSION ... VERSION and ALTER EXTENSION ... UPDATE both work.
DATA = rocketmq_stream--0.1.0.sql rocketmq_stream--0.1.0--0.2.0.sql \
	rocketmq_stream--$(EXTVERSION).sql
PGFILEDESC = "rocketmq_stream - exactly-once RocketMQ consumer and producer"

CODEC_SRCS = src/rmq_json.c src/rmq_frame.c src/rmq_message.c src/rmq_proto.c src/rmq_sign.c src/rmq_alloc.c \
	src/rmq_group_proto.c
OBJS = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))

# pg_regress runs against a real broker; see test/run-regress.sh.
REGRESS = $(shell grep -v "^#" test/regress_schedule)

WARN = -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare \
	-Wno-missing-field-initializers -Wno-cast-function-type
PG_CPPFLAGS = -I$(srcdir)/src
PG_CFLAGS = $(WARN)
ifeq ($(CI),true)
PG_CFLAGS += -Werror
endif
SHLIB_LINK = -lz -llz4 -lzstd -lssl -lcrypto

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# PGXS tracks no header dependencies unless PostgreSQL was configured so.
$(OBJS): $(wildcard src/*.h)

# ---- codec unit tests and fuzzers: no server, libpgcommon for palloc ----
FE_CFLAGS = -DFRONTEND -I$(srcdir)/src -I$(shell $(PG_CONFIG) --includedir-server) $(WARN)
FE_LIBS = -L$(shell $(PG_CONFIG) --pkglibdir) -lpgcommon_shlib -lpgport_shlib -lz -llz4 -lzstd -lssl -lcrypto -lm
TEST_BIN = test/build

$(TEST_BIN):
	mkdir -p $@

UNIT_SRCS = $(sort $(wildcard test/unit/test_*.c))
$(TEST_BIN)/test_codec: $(UNIT_SRCS) test/unit/unit.h test/unit/alloc_vectors.tsv $(CODEC_SRCS) src/rmq_codec.h | $(TEST_BIN)
	$(CC) -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer $(FE_CFLAGS) -I$(srcdir)/test/unit \
		-o $@ $(UNIT_SRCS) $(CODEC_SRCS) $(FE_LIBS)

FUZZERS = fuzz_frame fuzz_json fuzz_message fuzz_route
FUZZ_BINS = $(addprefix $(TEST_BIN)/,$(FUZZERS))

$(TEST_BIN)/fuzz_%: test/fuzz/fuzz_%.c $(CODEC_SRCS) src/rmq_codec.h | $(TEST_BIN)
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
		$(FE_CFLAGS) -o $@ $< $(CODEC_SRCS) $(FE_LIBS)

.PHONY: unit fuzzers
unit: $(TEST_BIN)/test_codec
	$(TEST_BIN)/test_codec
fuzzers: $(FUZZ_BINS)

EXTRA_CLEAN = $(TEST_BIN) results regression.diffs regression.out

# ---- PGXN: the committed tree as $(EXTENSION)-$(EXTVERSION).zip, with one
# top directory of that name holding META.json, as PGXN takes it ----
DISTNAME = $(EXTENSION)-$(EXTVERSION)
EXTRA_CLEAN += $(DISTNAME).zip

.PHONY: dist
dist:
	@grep -q '"version": "$(EXTVERSION)"' META.json || \
		{ echo "META.json does not say version $(EXTVERSION)" >&2; exit 1; }
	@grep -q "^default_version = '$(EXTVERSION)'" $(EXTENSION).control || \
		{ echo "$(EXTENSION).control does not say default_version $(EXTVERSION)" >&2; exit 1; }
	@git diff --quiet HEAD -- || echo "dist: uncommitted changes are not in $(DISTNAME).zip" >&2
	git archive --format=zip --prefix=$(DISTNAME)/ -o $(DISTNAME).zip HEAD
