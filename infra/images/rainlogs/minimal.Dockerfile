# The shared part of the minimal, non-root images of Rainlogs binaries: build.sh appends
# one tail (rainlogs.tail, functions.tail, logpull-sim.tail) to make each image's
# Dockerfile. Nothing but the binaries (the build context's bin/), the shared libraries
# they link (found with ldd), the CA certificates and a passwd entry: no shell, no
# package manager.
ARG BASE
FROM ${BASE} AS rootfs
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null \
 && rm -rf /var/lib/apt/lists/*
COPY bin/ /out/usr/local/bin/
# The dynamic loader and every library the binaries link, at their own paths.
RUN set -e; mkdir -p /out/etc/ssl/certs /out/tmp /out/home/rainlogs; \
    for lib in $(for bin in /out/usr/local/bin/*; do ldd "$bin"; done | grep -o '/[^ ]*' | sort -u); do \
      mkdir -p "/out$(dirname "$lib")"; cp -L "$lib" "/out$lib"; \
    done; \
    cp /etc/ssl/certs/ca-certificates.crt /out/etc/ssl/certs/; \
    echo 'rainlogs:x:10001:10001:rainlogs:/home/rainlogs:/nonexistent' > /out/etc/passwd; \
    echo 'rainlogs:x:10001:' > /out/etc/group; \
    chmod 1777 /out/tmp; chown 10001:10001 /out/home/rainlogs

FROM scratch
COPY --from=rootfs /out/ /
ENV PATH=/usr/local/bin \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    HOME=/home/rainlogs
WORKDIR /home/rainlogs
USER 10001:10001
