.PHONY: install build test start clean up down infra-up infra-down

install:
	npm install

build:
	npm run build

test:
	npm test

start:
	npm start

clean:
	rm -rf dist proto/gen

# Distributed mode on this machine: NATS, Cassandra, router, 2 logic, 2 gateways (scripts/up.sh).
up:
	scripts/up.sh

# Stops exactly what `make up` started (pids and markers in .run/procs).
down:
	scripts/down.sh

# NATS and Cassandra only (for the test suites that need them).
infra-up:
	scripts/up.sh --infra-only

infra-down:
	scripts/down.sh --infra-only
