"""The concept explorer: a cached index over a run folder (`index`), its JSON API and static front
end (`app`), and the server (`serve`)."""
