# syntax=docker/dockerfile:1
# edge and loadrig in one small image. `edge` is the entrypoint; the loadrig Jobs in
# deploy/kubernetes run `loadrig` from the same image.
#
#   docker build -t edge:0.1.0 .
#   docker run --rm -p 8080:8080 -v "$PWD/apps:/var/lib/edge/apps" edge:0.1.0
#
# Build stage: the Rust toolchain, plus the C toolchain for wasm that the JavaScript
# engine embedded in edge (`edge build`) needs (sdk-js/setup.sh installs it).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN bash sdk-js/setup.sh \
 && cargo build --release --locked -p edge -p loadrig \
      --config profile.release.debug=false --config profile.release.strip=true \
 && mkdir /out && cp target/release/edge target/release/loadrig /out/

# Runtime stage: glibc and CA certificates only; no shell is needed by the manifests.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --home-dir /var/lib/edge --create-home edge \
 && mkdir -p /var/lib/edge/apps /var/cache/edge \
 && chown -R edge:edge /var/lib/edge /var/cache/edge
COPY --from=build /out/edge /out/loadrig /usr/local/bin/
USER 10001:10001
EXPOSE 8080 8081
ENTRYPOINT ["edge"]
CMD ["serve", "/var/lib/edge/apps", "--listen", "0.0.0.0:8080", "--admin", "0.0.0.0:8081", \
     "--cache-dir", "/var/cache/edge"]
