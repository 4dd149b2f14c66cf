#!/bin/sh
# Writes the sizes in the wrong order, then corrects the file.
# red: compare
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
docker build -q -t calc:scratch .
docker image ls calc:scratch --format '{{.Size}}' > ~/sizes.txt
docker image ls calc:single --format '{{.Size}}' >> ~/sizes.txt
# fix
set -e
docker image ls calc:single --format '{{.Size}}' > ~/sizes.txt
docker image ls calc:scratch --format '{{.Size}}' >> ~/sizes.txt
