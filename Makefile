.PHONY: install build test start clean

install:
	npm install

build:
	npm run build

test:
	npm test

start:
	npm start

clean:
	rm -rf dist proto/gen
