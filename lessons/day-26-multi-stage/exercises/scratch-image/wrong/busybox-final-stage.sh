#!/bin/sh
# Two stages, but the final one is busybox, with its shell.
# red: multi-stage
set -e
cd ~/calculator
cat > Dockerfile.single <<'DOCKERFILE'
FROM golang:1.19
WORKDIR /src
COPY . .
RUN go build -o /usr/local/bin/calculator .
ENTRYPOINT ["calculator"]
DOCKERFILE
docker build -q -t calc:single -f Dockerfile.single .
cat > Dockerfile <<'DOCKERFILE'
FROM golang:1.19 AS build
ENV CGO_ENABLED=0
WORKDIR /src
COPY . .
RUN go build -o /usr/local/bin/calculator .

FROM scratch
COPY --from=build /usr/local/bin/calculator /calculator
ENTRYPOINT ["/calculator"]
DOCKERFILE
sed -i 's/^FROM scratch$/FROM busybox/' Dockerfile
docker build -q -t calc:scratch .
