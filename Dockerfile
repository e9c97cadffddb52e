# One image for every service (Node 20). The entrypoint is node itself — no shell, no dispatcher —
# and the argument picks the service's main:
#
#   docker run -p 7100:7100 -p 7180:7180 -v im-data:/data IMAGE    # embedded mode: everything in one process (64 MiB semi-space)
#   docker run IMAGE dist/gateway/main.js                          # or dist/router/main.js, dist/logic/main.js
#   docker run IMAGE --max-semi-space-size=32 dist/logic/main.js   # as the chart runs logic and gateways
#   docker run IMAGE dist/cli/main.js migrate                     # the im CLI: operator commands
#   docker run -v im-data:/data IMAGE dist/cli/main.js token alice
#   docker run IMAGE dist/cli/main.js plan --online 100000 --send-qps 2000
#
# `im plan` reads the bench results shipped in bench/results (JSON only) through dist/bench; the
# build runs it once so an image where it cannot start is never produced. The client SDK for
# applications is the separate package in client/ (client/README.md), not this image.
#
# Settings come from the environment (README.md, k8s/README.md). The Helm chart in k8s/im passes
# the main as `args` and everything else as environment.

ARG NODE_IMAGE=node:20-bookworm-slim

# ---- build: compile TypeScript, then keep production dependencies only ----
FROM ${NODE_IMAGE} AS build
# better-sqlite3 is a native addon: node-gyp builds it from source (python3, make, g++) when no
# prebuilt binary matches this platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the root package's "prepare" script builds, and the sources are not copied
# yet. better-sqlite3 is the one dependency whose install script matters (protobufjs' only
# prints a version warning); `npm rebuild` runs it.
RUN npm ci --ignore-scripts --no-audit --no-fund \
 && npm rebuild better-sqlite3
COPY . .
# The production build (tsconfig.build.json): no tests, test helpers, test/ or k8s/ in dist, and it
# fails if a production file imports one. Of bench/ it builds only the planner `im plan` loads.
RUN npm run build:prod \
 && npm prune --omit=dev --no-audit --no-fund \
 && find bench/results -type f ! -name '*.json' -delete \
 && node dist/cli/main.js plan --online 1000 --send-qps 10 --json > /dev/null

# ---- runtime ----
FROM ${NODE_IMAGE}
ENV NODE_ENV=production \
    IM_GATEWAY_ADDR=0.0.0.0:7100 \
    IM_ROUTER_HTTP_ADDR=0.0.0.0:7180 \
    IM_LOGIC_ADDR=0.0.0.0:7190 \
    IM_ADMIN_ADDR=0.0.0.0:9100 \
    IM_DATA_DIR=/data
# IM_ROUTER_GRPC_ADDR is not set here: it is the router's listen address but the address gateways
# and logic dial, so it is given per container (the chart does; the router alone in Docker needs
# -e IM_ROUTER_GRPC_ADDR=0.0.0.0:7181).
WORKDIR /app
# Code and dependencies stay owned by root: the service user can read them, not change them.
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
# The .proto files are loaded at run time (dist/../proto).
COPY --from=build /src/proto/client.proto ./proto/client.proto
COPY --from=build /src/proto/internal ./proto/internal
# What `im plan` plans from (dist/bench/options.ts: REPO_ROOT/bench/results).
COPY --from=build /src/bench/results ./bench/results
# Only embedded mode writes anything (SQLite and the token key, under IM_DATA_DIR): mount a volume.
RUN mkdir -p /data && chown 1000:1000 /data
# Numeric, so Kubernetes' runAsNonRoot can verify it (the image's "node" user is 1000).
USER 1000:1000
EXPOSE 7100 7180 7181 7190 9100
# The services handle SIGTERM/SIGINT themselves (drain, then exit), so node can be PID 1.
ENTRYPOINT ["node"]
# Embedded mode with logic's young generation (BENCHMARKS.md): a message is held a few hundred ms.
CMD ["--max-semi-space-size=64", "dist/embedded/main.js"]
