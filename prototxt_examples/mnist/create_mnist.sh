#!/bin/sh
# Build the MNIST LMDBs from the bundled IDX files (Caffe's examples/mnist/create_mnist.sh).
# Run from the repository root.
set -e
DIR=prototxt_examples/mnist
for split in train t10k; do
  name=$split
  [ "$split" = t10k ] && name=test
  rm -rf "$DIR/mnist_${name}_lmdb"
  pyforge convert-mnist "$DIR/$split-images-idx3-ubyte.gz" "$DIR/$split-labels-idx1-ubyte.gz" \
    "$DIR/mnist_${name}_lmdb" --backend=lmdb
done
echo "Done."
