# Sourced by test scripts: cleanup that can never fail a run.
#
# `remove_tree DIR` deletes a temp dir that processes we did not start may still be writing
# (WebKit's web processes fill `mesa_shader_cache` after the app was killed). It retries for a
# few seconds, then leaves the rest behind with a note: a temp dir left in /tmp is harmless, a
# cleanup error turning a green run red is not.
remove_tree() {
  local dir=$1 try
  [ -n "$dir" ] && [ -e "$dir" ] || return 0
  for try in 1 2 3 4 5 6 7 8 9 10; do
    rm -rf -- "$dir" 2>/dev/null && return 0
    sleep 0.5
  done
  echo "note: could not remove $dir (still in use); left behind" >&2
  return 0
}
