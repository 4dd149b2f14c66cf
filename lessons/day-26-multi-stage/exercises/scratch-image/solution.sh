#!/bin/sh
# Reference solution. The test suite runs it step by step, grading after each `# task:` line.
set -e
cd ~/calculator
# task: single-stage
cat > Dockerfile.single <<'DOCKERFILE'
FROM golang:1.19
WORKDIR /src
COPY . .
RUN go build -o /usr/local/bin/calculator .
ENTRYPOINT ["calculator"]
DOCKERFILE
docker build -t calc:single -f Dockerfile.single .
# task: multi-stage
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
docker build -t calc:scratch .
# task: compare
docker image ls calc:single --format '{{.Size}}' > ~/sizes.txt
docker image ls calc:scratch --format '{{.Size}}' >> ~/sizes.txt
