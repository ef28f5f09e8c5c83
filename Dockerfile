# Portier image: compile the TypeScript in a build stage, run the compiled gateway as a non-root user.
# Build:  docker build -t portier .
# Run:    docker run -p 443:5443 -v ./portier.yaml:/etc/portier/portier.yaml:ro portier

FROM node:24-bookworm-slim AS build
WORKDIR /src
# Dependencies first, so source edits do not re-run npm ci.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
# The web UI's source; `npm run build` bundles it into dist/ui/static (nothing is fetched at run time).
COPY ui ./ui
RUN npm run build \
 && npm prune --omit=dev --no-audit --no-fund

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production
# A fixed uid/gid (999): compose.gc.yaml runs the registry as the same user, so that Portier's garbage
# collection may delete what the registry wrote in the shared storage volume.
RUN groupadd --system --gid 999 portier \
 && useradd --system --uid 999 --gid portier --home-dir /app --no-create-home --shell /usr/sbin/nologin portier
# The registry binary for garbage collection (`portier gc` runs `registry garbage-collect` on the storage
# mounted at /var/lib/registry, see compose.gc.yaml): the static binary of the image compose.yaml runs.
COPY --from=registry:2.8.3 /bin/registry /usr/local/bin/registry
WORKDIR /app
COPY --from=build /src/dist ./dist
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/package.json ./package.json
COPY config ./config
# The documented defaults as the config the CMD names, so the image also runs without a mounted
# file, configured by PORTIER_* variables alone (e.g. PORTIER_UPSTREAMS='[{url: "http://registry:5000"}]').
COPY config/portier.yaml /etc/portier/portier.yaml
# certs/ (the generated self-signed certificate), auth/ (a generated htpasswd) and data/ must be
# writable by portier; a named volume mounted on one of them starts with this ownership.
RUN mkdir -p /app/certs /app/auth /app/data \
 && chown portier:portier /app/certs /app/auth /app/data
USER portier
# 5443: the registry (HTTPS); 9113: /metrics, /healthz, /readyz when admin.listen is "0.0.0.0:9113" (config/compose.portier.yaml)
EXPOSE 5443 9113
# Healthy when the gateway answers where its config says: the admin listener's /healthz (admin.listen,
# 127.0.0.1:9113 by default), else /v2/ on server.listen (200, or 401 once authentication is on).
# Reads the same config file (and PORTIER_* variables) as the CMD: a changed port moves the check too.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["node", "--max-semi-space-size=1", "--liftoff-only", "--no-concurrent-recompilation", "dist/cli.js", "healthcheck", "--config", "/etc/portier/portier.yaml"]
# V8 flag: the young generation capped at 1 MiB per semi-space. Body bytes streaming through are garbage as soon
# as they are written on, but V8 frees their buffers only when it collects the young generation, which a small one
# makes it do often: 16 concurrent uploads peaked at 228 MiB RSS with Node 24's default, 184 with 4 MiB, 152 with
# 1 MiB; uploads no slower, HEAD manifest ~7 % fewer requests per second (see BENCHMARKS.md).
# --liftoff-only: WebAssembly (only undici's HTTP parser here) stays in V8's baseline compiler; its tier-up to the
# optimizing one took ~15 MiB of compiler memory that a background thread's malloc arena kept: 11-13 MiB more peak
# RSS with 16 uploads, and no faster relaying.
# --no-concurrent-recompilation: V8 optimizes hot JavaScript on the main thread instead of on background
# threads, whose per-thread malloc arenas kept the optimizing compilers' memory after each burst of load
# (5 MiB of arenas instead of 18-29). The price is short stops while the gateway warms up (~0.8 s of compiling
# in all over the first minute of load, the longest 17 ms) and 1-3 % fewer small requests per second; transfer
# rates stayed within the benchmark's spread (BENCHMARKS.md, "Peak RSS").
# The same flags as scripts/quickstart.sh, npm start and the tests.
ENTRYPOINT ["node", "--max-semi-space-size=1", "--liftoff-only", "--no-concurrent-recompilation", "dist/cli.js"]
CMD ["serve", "--config", "/etc/portier/portier.yaml"]
