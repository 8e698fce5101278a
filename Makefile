# Thin wrapper around CMake for the README's two commands.
#   make run    install missing packages, build, start chatd on :8080
#   make test   install missing packages, build, run the whole suite
#   make docs   the API reference (Doxygen) in build/docs/html
BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
LISTEN     ?= 127.0.0.1:8080
DATA_DIR   ?= ./var
CMAKE_FLAGS ?=

.PHONY: all deps build run test test-asan test-release clean format docs

all: build

deps:
	@scripts/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j$(JOBS)

run: build
	mkdir -p $(DATA_DIR)
	$(BUILD)/daemons/chatd/chatd --listen $(LISTEN) --data-dir $(DATA_DIR)

# The whole suite: the release build's tests (gcc), then the unit and
# integration tests again under ASan+UBSan built with clang (so both
# compilers' warnings fail the build), with the libFuzzer targets run for
# a bounded time.
test: test-release test-asan

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 600

test-asan: deps
	CC=clang-14 cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DCHAT_SANITIZE=ON -DCHAT_FUZZ=ON $(CMAKE_FLAGS)
	cmake --build $(BUILD_ASAN) -j$(JOBS)
	cd $(BUILD_ASAN) && ctest --output-on-failure -j$(JOBS) --timeout 600 -L 'unit|integration'

# The API reference (Doxygen, from include/chat/ and docs/client.md).
docs: deps
	mkdir -p $(BUILD)/docs
	CHAT_SOURCE_DIR=$(CURDIR) CHAT_DOXYGEN_OUT=$(BUILD)/docs doxygen docs/Doxyfile
	@echo "API reference: $(BUILD)/docs/html/index.html"

format:
	clang-format-14 -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(BUILD_ASAN)
