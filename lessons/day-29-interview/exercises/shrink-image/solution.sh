#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
cd ~/shrink
# task: fat
docker build -q -t hello:fat .
docker image ls hello
# task: slim
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
docker image ls hello
# task: still-works
docker run hello:slim
