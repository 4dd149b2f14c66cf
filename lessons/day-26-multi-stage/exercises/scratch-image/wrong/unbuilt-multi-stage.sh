#!/bin/sh
# A correct multi-stage Dockerfile left unbuilt, and the single-stage image tagged calc:scratch.
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
docker tag calc:single calc:scratch
docker image ls calc:single --format '{{.Size}}' > ~/sizes.txt
docker image ls calc:scratch --format '{{.Size}}' >> ~/sizes.txt
