print("no network here")
