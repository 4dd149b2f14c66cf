#!/bin/sh
# Runs hello:slim with --rm, so no container is left to show its greeting; then without.
# red: still-works
set -e
cd ~/shrink
docker build -q -t hello:fat .
cat > Dockerfile <<'DOCKERFILE'
FROM golang:1.19 AS build
WORKDIR /src
COPY go.mod main.go ./
RUN CGO_ENABLED=0 go build -ldflags='-s -w' -o /hello .

FROM scratch
COPY --from=build /hello /hello
ENTRYPOINT ["/hello"]
DOCKERFILE
docker build -q -t hello:slim .
docker run --rm hello:slim
# fix
set -e
docker run hello:slim
