# files.sh - a "real program" for the sandbox battery (tests/integration/
# test_hostile.c): ordinary file work by busybox sh and its applets in
# /workspace under the minimal preset. It must simply work - forks,
# pipes, redirections, tar, sha256sum - so that the battery proves the
# sandbox stops attacks without breaking normal tools. The driver compares
# the whole output with what it expects.
set -e
cd /workspace
mkdir -p proj/src
for i in 1 2 3 4 5; do
    echo "line $i" > proj/src/f$i.txt
done
cat proj/src/*.txt | sort -r > proj/all.txt
echo "lines $(wc -l < proj/all.txt)"
echo "first $(head -n 1 proj/all.txt)"
echo "sha $(sha256sum proj/all.txt | cut -c1-16)"
tar -cf proj.tar proj
echo "tar $(tar -tf proj.tar | wc -l)"
mv proj/all.txt out/all.txt
rm -r proj proj.tar
echo "ls $(ls /workspace | tr '\n' ' ')"
echo "out $(ls out)"
echo "whoami $(id -u):$(id -g) $(pwd)"
echo "RESULT busybox OK"
