# The task image's agent layer: snapctl with the Fusion driver and the self-contained CRIU.
# Build: docker build -t spot-snapshots .
# Run a task (the container needs FUSE and CRIU's capabilities):
#   docker run --device /dev/fuse --cap-add SYS_ADMIN --cap-add CHECKPOINT_RESTORE \
#     --cap-add SYS_PTRACE --security-opt apparmor=unconfined --security-opt seccomp=unconfined \
#     spot-snapshots agent run --task t-1 --workdir s3://bucket/work/t-1 -- my-command args
# Node 24 is the current LTS line (Node 20, which the build machines run, is past its end of life).
FROM node:24-bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
      python3 make g++ libfuse2 fuse libxxhash-dev ca-certificates debian-archive-keyring \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/snapctl
# The postinstall applies patches/ to fuse-native and builds native/page-hash: both must be
# here before npm install runs it.
COPY package.json package-lock.json ./
COPY patches ./patches
COPY native ./native
RUN npm install --no-audit --no-fund
COPY . .
RUN criu/bundle/install.sh /opt/snapctl/.local/criu && npx tsc -p tsconfig.build.json && npm prune --omit=dev

FROM node:24-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends \
      libfuse2 fuse util-linux ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/snapctl
COPY --from=build /opt/snapctl/package.json ./
COPY --from=build /opt/snapctl/node_modules ./node_modules
COPY --from=build /opt/snapctl/dist ./dist
COPY --from=build /opt/snapctl/bin ./bin
COPY --from=build /opt/snapctl/native/page-hash/build/Release/page_hash.node ./native/page-hash/build/Release/page_hash.node
COPY --from=build /opt/snapctl/.local/criu ./.local/criu
ENV SNAPCTL_CRIU=/opt/snapctl/.local/criu/criu
ENTRYPOINT ["node", "/opt/snapctl/bin/snapctl.js"]
