def run(pset):
    return {"y": pset["a"]}
