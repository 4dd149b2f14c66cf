#!/bin/sh
# The right multi-stage Dockerfile, unbuilt; hello:slim built instead from another file that only
# echoes the greeting from busybox.
# red: slim
set -e
cd ~/shrink
cat > Dockerfile <<'DOCKERFILE'
FROM golang:1.19 AS build
WORKDIR /src
COPY go.mod main.go ./
RUN CGO_ENABLED=0 go build -ldflags='-s -w' -o /hello .

FROM scratch
COPY --from=build /hello /hello
ENTRYPOINT ["/hello"]
DOCKERFILE
mkdir -p ~/fake
printf 'FROM busybox\nCMD ["echo", "hello from a very small image"]\n' > ~/fake/Dockerfile
docker build -q -t hello:slim ~/fake
docker run hello:slim
