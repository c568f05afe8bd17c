# pgwarden — run `make help` for the targets.

GO        ?= go
BIN       ?= bin/pgwarden
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME  ?= 10s
# Every fuzz target: package and function.
FUZZ_TARGETS := \
	./pgwire:FuzzStartupPacket \
	./pgwire:FuzzTypedMessageBeforeAuth \
	./pgwire:FuzzPROXYHeader \
	./pgwire:FuzzSQLWatch \
	./pgwire:FuzzMessageScanner \
	./authcore:FuzzSCRAMExchange \
	./authcore:FuzzParseHash \
	./authcore:FuzzBearerToken \
	./authcore:FuzzOAuthBearer \
	./hba:FuzzParseFile \
	./hba:FuzzTOMLRules \
	./hba:FuzzRegex \
	./httpfront:FuzzAuthorizationHeader \
	./httpfront:FuzzSQLBody \
	./httpfront:FuzzCopyStatement \
	./httpfront:FuzzResultJSON \
	./httpfront:FuzzSessionCookie \
	./httpfront:FuzzConsoleForm \
	./httpfront:FuzzByteaArgument \
	./httpfront:FuzzScalarArgument \
	./httpfront:FuzzArrayElements \
	./httpfront:FuzzArrayText \
	./httpfront:FuzzForwardedAndHost \
	./admin:FuzzAdminCommand

.PHONY: help build man test unit integration vet fuzz demo bench bench-pgbench bench-http bench-idle bench-flood bench-store pg-regress clean

help:
	@echo "make build          build $(BIN)"
	@echo "make man            man pages from the command definitions, into bin/man"
	@echo "make test           gofmt check, go vet, unit and integration tests with -race (needs PostgreSQL server binaries)"
	@echo "make vet            gofmt check and go vet only"
	@echo "make unit           unit tests only (-race)"
	@echo "make integration    integration tests only (-race)"
	@echo "make fuzz           run every fuzz target for FUZZTIME (default $(FUZZTIME))"
	@echo "make demo           throwaway PostgreSQL + pgwarden in front of it"
	@echo "make bench          every benchmark suite below (about 15 minutes)"
	@echo "make bench-pgbench  pgbench through pgwarden vs direct PostgreSQL and PgBouncer"
	@echo "make bench-http     /_sql load with trust, Basic and Bearer vs pgx directly"
	@echo "make bench-idle     resident memory of 1000 idle clients"
	@echo "make bench-flood    session latency during a flood of wrong passwords"
	@echo "make bench-store    logins with the users file and with the PostgreSQL store"
	@echo "make pg-regress PGSRC=DIR  PostgreSQL's regression suite, directly and through pgwarden (DIR: its source tree)"
	@echo "make clean          remove built binaries and benchmark results"

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pgwarden

man: build
	$(BIN) man --dir bin/man

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

integration:
	$(GO) test -race -count=1 -timeout 20m ./integration/

test: vet
	$(GO) test -race -count=1 -timeout 20m ./...

fuzz:
	GO=$(GO) ./scripts/fuzz.sh $(FUZZTIME) $(FUZZ_TARGETS)

demo: build
	./scripts/demo.sh

bench: bench-pgbench bench-http bench-idle bench-flood bench-store

bench-pgbench: build
	./bench/pgbench.sh

bench-http: build
	./bench/http.sh

bench-idle: build
	./bench/idle.sh

bench-flood: build
	./bench/flood.sh

bench-store: build
	./bench/store.sh

pg-regress:
	./scripts/pg-regress.sh $(PGSRC) $(MODES)

clean:
	rm -rf bin demo/run bench/results
